import CheckpointIO
import Foundation

/// The decoding side of compressed-tensors' bitmask layouts (`SparseBitmask`): the
/// primary tensor is `<module>.compressed`, read with `<module>.bitmask` (and the
/// `<module>.shape` and `<module>.row_offsets` it folds in) into the dense `<module>.weight`
/// in the values' own dtype. The values are exact: nothing is rounded.
public struct SparseBitmaskCodec: WeightCodec {
  /// The dense shape of every bitmask-stored module, from its `<module>.shape` tensor.
  let shapes: [String: [Int]]

  public var layoutName: String { "sparse-bitmask" }

  /// The codec for `checkpoint`'s bitmask-stored modules.
  public static func reading(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> SparseBitmaskCodec {
    var shapes: [String: [Int]] = [:]
    for tensor in checkpoint.tensors where tensor.name.hasSuffix(".shape") {
      let module = String(tensor.name.dropLast(".shape".count))
      guard checkpoint.tensor(named: module + ".compressed") != nil else { continue }
      guard tensor.info.dtype == .i64, tensor.info.elementCount == 2 else {
        throw .invalidTensor(
          name: tensor.name, reason: "\(tensor.info.dtype.rawValue) \(tensor.info.shape) is not an I64 pair of sizes")
      }
      let bytes = checkpoint.bytes(of: tensor)
      let dims = (0..<2).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
      guard dims.allSatisfy({ $0 >= 0 && $0 < 1 << 40 }) else {
        throw .invalidTensor(name: tensor.name, reason: "holds the impossible shape \(dims)")
      }
      shapes[module] = dims
    }
    return SparseBitmaskCodec(shapes: shapes)
  }

  /// The module of a tensor named `<module><suffix>` that this layout stores, or nil.
  private func module(_ name: String, _ suffixes: [String]) -> String? {
    for suffix in suffixes where name.hasSuffix(suffix) {
      let module = String(name.dropLast(suffix.count))
      if shapes[module] != nil { return module }
    }
    return nil
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard let module = module(stored.name, [".compressed"]), let shape = shapes[module] else { return nil }
    return DenseWeight(name: module + ".weight", shape: shape, dtype: stored.dtype, note: "bitmask expanded")
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool {
    module(stored.name, [".bitmask", ".shape", ".row_offsets"]) != nil
  }

  public func exactBytes(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [UInt8]? {
    let module = String(weight.name.dropLast(".weight".count))
    let bitmask = try requiredCompanion(primary, module + ".bitmask", purpose: "expanded")
    return try SparseBitmask.decode(
      name: weight.name, values: primary, bitmask: bitmask, rows: weight.shape[0], columns: weight.shape[1])
  }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    let dense = try exactBytes(primary, as: weight) ?? []
    return dense.withUnsafeBytes {
      Float32Conversion.floats($0, dtype: primary.descriptor.dtype, count: weight.shape[0] * weight.shape[1])
    }
  }
}
