import CheckpointIO
import Foundation
import LinearAlgebra

/// A quantized weight plus a low-rank correction in the weight's dtype, W ~ Q + A B,
/// found by alternating as LQ-LoRA does (Guo et al., *LQ-LoRA: Low-rank plus Quantized
/// Matrix Decomposition for Efficient Language Model Finetuning*, ICLR 2024):
/// Q = quantize(W - A B), then A B = the best rank-k approximation of W - dequantize(Q),
/// starting from A B = 0. The pair with the least error over the iterations is kept.
///
/// On disk: the quantize pass's tensors for `<module>.weight` (compressed-tensors layout)
/// plus `<module>.lowrank_a` [out, k] and `<module>.lowrank_b` [k, in]; config.json
/// records the rank under `swiftcompress_lowrank_residual`, and `decompress` adds the
/// product back.
public struct LowRankResidualPass: CompressionPass {
  public static let identifier = "lowrank-residual"
  public static let summary = "quantized weight plus a low-rank correction, W ~ Q + A B (LQ-LoRA)"
  public static let defaultIterations = 3
  /// The config.json key of the record.
  public static let configKey = "swiftcompress_lowrank_residual"

  public let configuration: Configuration
  var quantize: QuantizePass

  public init(configuration: Configuration) throws(SwiftCompressError) {
    guard configuration.rank >= 1 else {
      throw .invalidConfiguration(pass: Self.identifier, reason: "residual_rank must be at least 1")
    }
    guard (1...50).contains(configuration.iterations) else {
      throw .invalidConfiguration(pass: Self.identifier, reason: "residual_iterations must be in 1...50")
    }
    self.configuration = configuration
    quantize = try QuantizePass(configuration: configuration.quantize)
  }

  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> LowRankResidualPass {
    var pass = self
    pass.quantize = try quantize.prepared(for: checkpoint)
    if !pass.quantize.fp8Sources.isEmpty {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "holds FP8 weights, and a low-rank residual needs dense ones; run 'swiftcompress decompress' on it first")
    }
    return pass
  }

  public var warnings: [String] { quantize.warnings }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] { quantize.selectionWarnings(for: checkpoint) }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    switch try quantize.plan(tensor) {
    case .keep(let reason): return .keep(reason: reason)
    case .transform(let outputs, let note):
      guard let module = QuantizePass.module(of: tensor.name) else {
        return .keep(reason: "not a .weight tensor (a low-rank residual needs a whole weight)")
      }
      let (rows, columns) = (tensor.shape[0], tensor.shape[1])
      let k = configuration.rank
      guard k <= min(rows, columns) else {
        throw .invalidTensor(
          name: tensor.name, reason: "residual_rank \(k) is above min(out, in) = \(min(rows, columns))")
      }
      return .transform(
        outputs: outputs + [
          PlannedTensor(name: module + ".lowrank_a", dtype: tensor.dtype, shape: [rows, k]),
          PlannedTensor(name: module + ".lowrank_b", dtype: tensor.dtype, shape: [k, columns]),
        ],
        note: (note.map { $0 + ", " } ?? "") + "plus rank \(k) low-rank part (\(configuration.iterations) iterations)")
    }
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    let name = input.descriptor.name
    let dtype = input.descriptor.dtype
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let k = configuration.rank
    let quantized = Array(outputs.dropLast(2))
    let weights = input.floats()
    if let bad = weights.firstIndex(where: { !$0.isFinite }) {
      throw .invalidTensor(
        name: name,
        reason:
          "element [\(bad / columns), \(bad % columns)] is \(weights[bad]); weights must be finite\(nonFiniteAdvice)")
    }
    var lowRank = [Float](repeating: 0, count: weights.count)
    var best: (codes: [[UInt8]], a: [UInt8], b: [UInt8], dense: [Float], error: Double)?
    for iteration in 0..<configuration.iterations {
      // Q = quantize(W - A B), stored as the weight's dtype.
      let residual = QuantizePass.encode(zip(weights, lowRank).map { $0 - $1 }, as: dtype)
      let codes: [[UInt8]] = try withBuffers([residual]) { (views) throws(SwiftCompressError) -> [[UInt8]] in
        let result = try quantize.transform(
          TensorInput(descriptor: input.descriptor, bytes: views[0]), outputs: quantized)
        return result.outputs.map { data in
          switch data {
          case .owned(let bytes): bytes
          case .borrowed(let view): Array(view)
          case .input: Array(views[0])
          }
        }
      }
      let dequantized = try quantize.dequantize(quantized, data: codes, shape: [rows, columns])
      // A B = the rank-k SVD of W - dequantize(Q), stored in the weight's dtype.
      let target = zip(weights, dequantized).map { $0 - $1 }
      let (aValues, bValues) = try Self.factors(
        target, rows: rows, columns: columns, rank: k, seed: RandomCriterion.fnv1a(name) &+ UInt64(iteration),
        name: name)
      let a = QuantizePass.encode(aValues, as: dtype)
      let b = QuantizePass.encode(bValues, as: dtype)
      do {
        lowRank = try FactorizePass.product(
          a: a.withUnsafeBytes { Float32Conversion.floats($0, dtype: dtype, count: rows * k) },
          b: b.withUnsafeBytes { Float32Conversion.floats($0, dtype: dtype, count: k * columns) }, rows: rows, rank: k,
          columns: columns)
      } catch {
        throw .invalidTensor(name: name, reason: "BLAS failed: \(error.localizedDescription)")
      }
      let dense = zip(dequantized, lowRank).map { $0 + $1 }
      var error = 0.0
      for i in weights.indices {
        let d = Double(weights[i]) - Double(dense[i])
        error += d * d
      }
      if best == nil || error < best!.error {
        best = (codes, a, b, dense, error)
      }
    }
    guard let best else { return TransformResult(outputs: [], reconstruction: .notApplicable) }
    return TransformResult(
      outputs: best.codes.map { .owned($0) } + [.owned(best.a), .owned(best.b)], reconstruction: .dense(best.dense))
  }

  /// Row-major A (rows x k) and B (k x columns) of the randomized SVD of `values`.
  static func factors(_ values: [Float], rows: Int, columns: Int, rank k: Int, seed: UInt64, name: String)
    throws(SwiftCompressError) -> (a: [Float], b: [Float])
  {
    do {
      let wt = try Matrix.transposeOfRowMajor(values, rows: rows, columns: columns)
      // Not factorize's defaults: LQ-LoRA keeps the randomized SVD it was measured with.
      let t = try randomizedSVD(wt, rank: k, oversampling: 10, powerIterations: 2, normalizer: .qr, seed: seed)
      return FactorizePass.svdFactors(u: t.u, singularValues: t.singularValues, vt: t.vt, rows: rows)
    } catch {
      throw .invalidTensor(name: name, reason: "LAPACK failed: \(error.localizedDescription)")
    }
  }

  /// Adds `<module>.lowrank_a` x `<module>.lowrank_b` to `dense` when the checkpoint
  /// holds them (decompress of a low-rank residual checkpoint).
  static func addLowRank(module: String, of input: TensorInput, to dense: inout [Float], rows: Int, columns: Int)
    throws(SwiftCompressError)
  {
    guard let a = input.companion(named: module + ".lowrank_a") else { return }
    guard let b = input.companion(named: module + ".lowrank_b") else {
      throw .invalidTensor(name: module + ".lowrank_b", reason: "missing: the low-rank part needs both factors")
    }
    let k = a.descriptor.shape.count == 2 ? a.descriptor.shape[1] : -1
    guard a.descriptor.shape == [rows, k], b.descriptor.shape == [k, columns] else {
      throw .invalidTensor(
        name: module + ".lowrank_a",
        reason: "shapes \(a.descriptor.shape) and \(b.descriptor.shape) do not multiply to [\(rows), \(columns)]")
    }
    do {
      let product = try FactorizePass.product(a: a.floats(), b: b.floats(), rows: rows, rank: k, columns: columns)
      for i in dense.indices { dense[i] += product[i] }
    } catch {
      throw .invalidTensor(name: module + ".lowrank_a", reason: "BLAS failed: \(error.localizedDescription)")
    }
  }

  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    let quantized = quantize.editedConfig(config, outputFloatDTypes: outputFloatDTypes)
    let base = quantized.flatMap { try? JSONParser.parse(Array($0.utf8)) } ?? config
    let record: JSONValue = .object([
      JSONMember("format", .string("low-rank-residual")),
      JSONMember("rank", .number("\(configuration.rank)")),
      JSONMember("iterations", .number("\(configuration.iterations)")),
      JSONMember("product", .string("weight = dequantize(weight) + lowrank_a @ lowrank_b")),
    ])
    guard let edited = base.setting(Self.configKey, to: record) else { return quantized }
    return JSONText.pretty(edited)
  }

  public var outputMetadata: [String: String] { quantize.outputMetadata }
}

extension QuantizePass {
  /// The dense Float32 values of this pass's outputs for one weight, with the
  /// arithmetic of `decompress` (the reference dequantizer's).
  func dequantize(_ outputs: [PlannedTensor], data: [[UInt8]], shape: [Int]) throws(SwiftCompressError) -> [Float] {
    let scheme = configuration.scheme
    let kind: DecompressPass.Format.Kind =
      scheme.isFloat8 ? .float8 : scheme == .mxfp4 ? .mxfp4 : scheme == .nvfp4 ? .nvfp4 : .packed(bits: scheme.bits)
    let decompress = DecompressPass(
      configuration: .init(dtype: .f32),
      format: .init(kind: kind, block: scheme == .fp8Block ? [128, 128] : nil, target: .f32))
    guard let primary = outputs.first, data.count == outputs.count else {
      throw .passBrokePlan(pass: Self.identifier, tensor: "?", reason: "no outputs to dequantize")
    }
    let base = primary.name.hasSuffix("_packed") ? String(primary.name.dropLast("_packed".count)) : primary.name
    return try withBuffers(data) { (buffers) throws(SwiftCompressError) -> [Float] in
      let inputs = zip(outputs, buffers).map { TensorInput(descriptor: $0, bytes: $1) }
      let byName = Dictionary(uniqueKeysWithValues: inputs.map { ($0.descriptor.name, $0) })
      let primaryInput = TensorInput(descriptor: primary, bytes: buffers[0]) { byName[$0] }
      let result = try decompress.transform(
        primaryInput, outputs: [PlannedTensor(name: base, dtype: .f32, shape: shape)])
      guard case .owned(let bytes) = result.outputs.first else {
        throw .passBrokePlan(pass: Self.identifier, tensor: base, reason: "dequantization gave no values")
      }
      return bytes.withUnsafeBytes { Float32Conversion.floats($0, dtype: .f32, count: $0.count / 4) }
    }
  }
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
