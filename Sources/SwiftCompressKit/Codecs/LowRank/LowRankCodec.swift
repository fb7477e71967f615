import CheckpointIO
import Foundation
import LinearAlgebra

/// factorize's layout: `<module>.weight_a` [out, k] and `<module>.weight_b` [k, in] for
/// the dense `<module>.weight` = weight_a x weight_b. The factors are stored dense, or each
/// quantized by a later recipe stage (`factors`: their codec, `<module>.weight_a_packed`, ...).
public struct LowRankCodec: WeightCodec {
  /// The codec of quantized factors (a quantization codec, or one per config group); nil
  /// when they are stored dense.
  public let factors: (any WeightCodec)?
  /// Each module's input width (weight_b's columns), read from the checkpoint.
  var columns: [String: Int] = [:]

  public init(factors: (any WeightCodec)?) {
    self.factors = factors
  }

  public var layoutName: String { factors?.layoutName ?? "low-rank (factorize)" }

  /// The codec with every module's input width read from `checkpoint`'s weight_b tensors.
  public func reading(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> LowRankCodec {
    var codec = self
    for tensor in checkpoint.tensors {
      guard let (weight, _) = try factor(TensorDescriptor(tensor.info)), weight.name.hasSuffix(".weight_b") else {
        continue
      }
      codec.columns[String(weight.name.dropLast(".weight_b".count))] = weight.shape[1]
    }
    return codec
  }

  /// The factor `stored` holds ("<module>.weight_a" / "_b") and its dense shape, and whether
  /// it is quantized; nil when it holds none. With `factors`, a module the quantize stage
  /// left out keeps its factors dense.
  private func factor(_ stored: TensorDescriptor) throws(SwiftCompressError) -> (DenseWeight, quantized: Bool)? {
    if let factors, let weight = try factors.densePrimary(stored) { return (weight, true) }
    // Dense factors are at least 16-bit floats: FP8 codes are never multiplied out as values.
    guard stored.shape.count == 2, stored.dtype.isFloatingPoint, stored.dtype.bitsPerElement > 8,
      stored.name.hasSuffix(".weight_a") || stored.name.hasSuffix(".weight_b")
    else {
      return nil
    }
    return (DenseWeight(name: stored.name, shape: stored.shape, dtype: stored.dtype, note: ""), false)
  }

  public func densePrimary(_ stored: TensorDescriptor) throws(SwiftCompressError) -> DenseWeight? {
    guard let (a, quantized) = try factor(stored), a.name.hasSuffix(".weight_a") else { return nil }
    let module = String(a.name.dropLast(".weight_a".count))
    guard let columns = columns[module] else {
      throw .invalidTensor(
        name: module + ".weight_b", reason: "missing: \(stored.name) cannot be multiplied out without it")
    }
    return DenseWeight(
      name: module + ".weight", shape: [a.shape[0], columns], dtype: quantized ? nil : stored.dtype,
      note: quantized ? "dequantized weight_a x weight_b" : "weight_a x weight_b")
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool {
    (try? factor(stored))??.0.name.hasSuffix(".weight_b") == true
  }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    let module = String(weight.name.dropLast(".weight".count))
    let name = primary.descriptor.name
    let missing = SwiftCompressError.invalidTensor(
      name: module + ".weight_b", reason: "missing: \(name) cannot be multiplied out without it")
    guard let (a, quantized) = try factor(primary.descriptor) else { throw missing }
    let (rows, k, columns) = (weight.shape[0], a.shape[1], weight.shape[1])
    let aValues: [Float]
    let bValues: [Float]
    if let factors, quantized {
      guard
        let stored = primary.companion(named: module + ".weight_b_packed")
          ?? primary.companion(named: module + ".weight_b")
      else { throw missing }
      // weight_b's own companions (its scales) are found the way weight_a's are.
      let b = TensorInput(descriptor: stored.descriptor, bytes: stored.bytes) { primary.companion(named: $0) }
      aValues = try factors.decode(primary, as: a)
      bValues = try factors.decode(
        b, as: DenseWeight(name: module + ".weight_b", shape: [k, columns], dtype: nil, note: ""))
    } else {
      guard let b = primary.companion(named: module + ".weight_b") else { throw missing }
      guard b.descriptor.shape.count == 2, b.descriptor.shape[0] == k else {
        throw .invalidTensor(
          name: module + ".weight_b", reason: "shape \(b.descriptor.shape) does not follow weight_a's \([rows, k])")
      }
      aValues = primary.floats()
      bValues = b.floats()
    }
    do {
      return try Self.product(a: aValues, b: bValues, rows: rows, rank: k, columns: columns)
    } catch {
      throw .invalidTensor(name: name, reason: "BLAS failed: \(error)")
    }
  }

  /// Row-major A B (out x in), computed as the column-major B^T A^T (in x out).
  public static func product(a: [Float], b: [Float], rows: Int, rank k: Int, columns: Int) throws -> [Float] {
    let at = try Matrix(rows: k, columns: rows, columnMajor: a)
    let bt = try Matrix(rows: columns, columns: k, columnMajor: b)
    var c = try Matrix(rows: columns, columns: rows)
    try gemm(bt, at, into: &c)
    return c.storage
  }
}

/// The low-rank residual layout (W ~ Q + A B, LQ-LoRA): a quantized weight in `base`'s
/// layout plus `<module>.lowrank_a` [out, k] and `<module>.lowrank_b` [k, in] in the
/// weight's dtype, added back when it is decoded.
public struct LowRankResidualCodec: WeightCodec {
  public let base: any QuantizationCodec

  public init(base: any QuantizationCodec) {
    self.base = base
  }

  public var layoutName: String { base.layoutName }

  /// The two factors of `module`'s low-rank part, named as stored.
  public static func factorNames(module: String) -> (a: String, b: String) {
    (module + ".lowrank_a", module + ".lowrank_b")
  }

  public func densePrimary(_ stored: TensorDescriptor) throws(SwiftCompressError) -> DenseWeight? {
    try base.densePrimary(stored)
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool {
    base.isCompanion(stored) || stored.name.hasSuffix(".lowrank_a") || stored.name.hasSuffix(".lowrank_b")
  }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    var dense = try base.decode(primary, as: weight)
    guard weight.name.hasSuffix(".weight") else { return dense }
    let names = Self.factorNames(module: String(weight.name.dropLast(".weight".count)))
    guard let a = primary.companion(named: names.a) else { return dense }
    guard let b = primary.companion(named: names.b) else {
      throw .invalidTensor(name: names.b, reason: "missing: the low-rank part needs both factors")
    }
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let k = a.descriptor.shape.count == 2 ? a.descriptor.shape[1] : -1
    guard a.descriptor.shape == [rows, k], b.descriptor.shape == [k, columns] else {
      throw .invalidTensor(
        name: names.a,
        reason: "shapes \(a.descriptor.shape) and \(b.descriptor.shape) do not multiply to [\(rows), \(columns)]")
    }
    do {
      let product = try LowRankCodec.product(a: a.floats(), b: b.floats(), rows: rows, rank: k, columns: columns)
      for i in dense.indices { dense[i] += product[i] }
    } catch {
      throw .invalidTensor(name: names.a, reason: "BLAS failed: \(error.localizedDescription)")
    }
    return dense
  }
}
