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
  public static let configKey = LowRankRecord.residualConfigKey

  public let configuration: Configuration
  var quantize: QuantizePass
  /// The layout written: the scheme's codec plus the low-rank factors.
  let codec: LowRankResidualCodec

  public init(configuration: Configuration) throws(SwiftCompressError) {
    guard configuration.rank >= 1 else {
      throw .invalidConfiguration(pass: Self.identifier, reason: "residual_rank must be at least 1")
    }
    guard (1...50).contains(configuration.iterations) else {
      throw .invalidConfiguration(pass: Self.identifier, reason: "residual_iterations must be in 1...50")
    }
    self.configuration = configuration
    quantize = try QuantizePass(configuration: configuration.quantize)
    codec = LowRankResidualCodec(
      base: configuration.quantize.scheme.codec(groupSize: configuration.quantize.groupSize))
  }

  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> LowRankResidualPass {
    var pass = self
    pass.quantize = try quantize.prepared(for: checkpoint)
    if try !Float8Input.sources(checkpoint).isEmpty {
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
      guard let module = LinearWeights.module(of: tensor.name) else {
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
          PlannedTensor(
            name: LowRankResidualCodec.factorNames(module: module).a, dtype: tensor.dtype, shape: [rows, k]),
          PlannedTensor(
            name: LowRankResidualCodec.factorNames(module: module).b, dtype: tensor.dtype, shape: [k, columns]),
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
      let residual = DenseCodec.encode(zip(weights, lowRank).map { $0 - $1 }, as: dtype)
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
      let dequantized = try codec.base.decode(outputs: quantized, data: codes, shape: [rows, columns])
      // A B = the rank-k SVD of W - dequantize(Q), stored in the weight's dtype.
      let target = zip(weights, dequantized).map { $0 - $1 }
      let (aValues, bValues) = try Self.factors(
        target, rows: rows, columns: columns, rank: k, seed: RandomCriterion.fnv1a(name) &+ UInt64(iteration),
        name: name)
      let a = DenseCodec.encode(aValues, as: dtype)
      let b = DenseCodec.encode(bValues, as: dtype)
      do {
        lowRank = try LowRankCodec.product(
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
      return Factorization.svdFactors(u: t.u, singularValues: t.singularValues, vt: t.vt, rows: rows)
    } catch {
      throw .invalidTensor(name: name, reason: "LAPACK failed: \(error.localizedDescription)")
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

  /// The quantized weight plus its low-rank part, decoded by the codec.
  public func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError)
    -> [Float]
  {
    try codec.decode(outputs: outputs.planned, data: try outputs.bytes(), shape: input.shape)
  }
}
