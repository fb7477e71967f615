import CheckpointIO
import Foundation

/// The dense weight a stored tensor stands for.
public struct DenseWeight: Sendable, Equatable {
  /// Its name (`<module>.weight`, or a factor `<module>.weight_a`).
  public var name: String
  /// Its dense shape, [rows, columns].
  public var shape: [Int]
  /// The dtype the values are naturally written in (a sparse weight's own dtype, a
  /// factor's); nil when the layout does not keep it (quantized codes: the model's dtype).
  public var dtype: DType?
  /// How the plan describes the decoding ("dequantized", "bitmask expanded").
  public var note: String

  public init(name: String, shape: [Int], dtype: DType?, note: String) {
    self.name = name
    self.shape = shape
    self.dtype = dtype
    self.note = note
  }
}

/// One stored layout of dense 2-D weights (integer codes packed in words, FP8, MXFP4,
/// NVFP4, a sparse bitmask, low-rank factors): which stored tensors stand for a weight,
/// and how they decode back to its dense values. A codec is a value, read from a
/// checkpoint's config.json (`StoredLayout`) or made by the pass that writes it.
///
/// `decompress`, `diff`, recipe chains and the error a chain reports all decode through
/// the codec; none of them asks which pass wrote the tensors.
public protocol WeightCodec: Sendable {
  /// How the layout is named in `diff` and notes ("pack-quantized int4").
  var layoutName: String { get }

  /// The dense weight `stored` stands for when it is the primary tensor of a stored
  /// weight (the one a decoder is given; its companions are found by name), else nil.
  func densePrimary(_ stored: TensorDescriptor) throws(SwiftCompressError) -> DenseWeight?

  /// Whether `stored` is read together with some primary tensor (a scale, a zero
  /// point, the second factor) and so is not written on its own.
  func isCompanion(_ stored: TensorDescriptor) -> Bool

  /// The dense Float32 values, row-major in `weight.shape`, of the weight whose primary
  /// tensor is `primary`; companions come from `primary.companion(named:)`.
  func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float]

  /// The dense weight's bytes in the stored values' own dtype, for a layout that holds the
  /// values exactly (a sparse bitmask), so that they are written without passing through
  /// Float32; nil (the default) for layouts whose values are computed.
  func exactBytes(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [UInt8]?
}

extension WeightCodec {
  public func exactBytes(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [UInt8]? {
    nil
  }

  /// Decodes the outputs a pass produced for one weight (`outputs[0]` is the primary),
  /// as a recipe chain or a low-rank residual does to measure what they cost.
  public func decode(outputs: [PlannedTensor], data: [[UInt8]], shape: [Int]) throws(SwiftCompressError) -> [Float] {
    guard let primary = outputs.first, data.count == outputs.count else {
      throw .passBrokePlan(pass: layoutName, tensor: outputs.first?.name ?? "?", reason: "no outputs to decode")
    }
    let weight =
      try densePrimary(primary) ?? DenseWeight(name: primary.name, shape: shape, dtype: nil, note: "decoded")
    return try withBuffers(data) { (buffers) throws(SwiftCompressError) -> [Float] in
      let inputs = zip(outputs, buffers).map { TensorInput(descriptor: $0, bytes: $1) }
      let byName = Dictionary(inputs.map { ($0.descriptor.name, $0) }) { first, _ in first }
      let input = TensorInput(descriptor: primary, bytes: buffers[0]) { byName[$0] }
      var dense = weight
      dense.shape = shape
      return try decode(input, as: dense)
    }
  }
}

/// A companion tensor `<base><suffix>` of `primary`, or an error naming what is missing.
func requiredCompanion(_ primary: TensorInput, _ name: String, purpose: String = "dequantized")
  throws(SwiftCompressError) -> TensorInput
{
  guard let tensor = primary.companion(named: name) else {
    throw .invalidTensor(name: name, reason: "missing: \(primary.descriptor.name) cannot be \(purpose) without it")
  }
  return tensor
}

/// Runs `body` with raw views of every array in `arrays`.
func withBuffers<R>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) throws(SwiftCompressError) -> R)
  throws(SwiftCompressError) -> R
{
  func nest(_ index: Int, _ views: [UnsafeRawBufferPointer]) throws(SwiftCompressError) -> R {
    guard index < arrays.count else { return try body(views) }
    let result: Result<R, SwiftCompressError> = arrays[index].withUnsafeBytes { raw in
      Result { () throws(SwiftCompressError) -> R in try nest(index + 1, views + [raw]) }
    }
    return try result.get()
  }
  return try nest(0, [])
}

/// Dense storage: Float32 values written as a float dtype (the last step of every
/// decoder, and what pruning and factorization write).
public enum DenseCodec {
  /// Float32 values (already representable in `dtype`) stored as `dtype`.
  public static func encode(_ values: [Float], as dtype: DType) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: values.count * dtype.bitsPerElement / 8)
    values.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBytes { _ = Float32Conversion.encode(src, as: dtype, into: $0) }
    }
    return out
  }
}
