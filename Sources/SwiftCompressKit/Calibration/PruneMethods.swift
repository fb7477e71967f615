import CheckpointIO
import Foundation

/// SparseGPT (Frantar and Alistarh 2023, arXiv 2301.00774) as a calibrated method of the prune
/// pass: per module, the mask chosen column block by column block from w²/U_jj² (unstructured:
/// the pass's sparsity of each block; N:M: per row the M - N smallest of every M inputs), the
/// pruned weights' error moved into the inputs not yet visited (`ErrorFeedback`). Written in the
/// pass's format (dense, or compressed-tensors' bitmask). With `refit` (the default, `--refit ls`)
/// the kept weights are then the exact least-squares solution for the mask (`Refit`).
public struct SparseGPTMethod: CalibratedMethod {
  public let pass: PrunePass
  public let feedback: ErrorFeedback
  /// The least-squares refit for the chosen mask; nil for SparseGPT's own values (`--refit none`).
  public let refit: Refit?

  public init(pass: PrunePass) {
    self.pass = pass
    let configuration = pass.configuration
    let mask: ErrorFeedback.Mask =
      configuration.pattern.map { .nOfM(n: $0.m - $0.n, m: $0.m) } ?? .unstructured(configuration.sparsity ?? 0)
    feedback = ErrorFeedback(
      blockSize: configuration.blockSize, dampening: configuration.dampening, order: .none, mask: mask)
    refit = configuration.refit == .ls ? Refit(dampening: configuration.dampening) : nil
  }

  public var name: String { "sparsegpt" }
  public var needsGram: Bool { true }
  public var fallback: String { "pruned by magnitude" }

  public func selects(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool {
    try pass.calibrates(weight, module: module)
  }

  public func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs) throws(SwiftCompressError)
    -> CalibratedModule
  {
    guard let gram = inputs.gram, weight.descriptor.shape.count == 2 else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "no input second moment")
    }
    let (rows, columns) = (weight.descriptor.shape[0], weight.descriptor.shape[1])
    let original = weight.floats()
    let solved = try feedback.run(
      weight: original, rows: rows, columns: columns, hessian: gram, module: module, shared: inputs.shared,
      round: nil)
    var values = solved.values
    if let refit {
      values =
        refit.solveMasked(original: original, start: values, rows: rows, columns: columns, hessian: gram).values
    }
    let (result, dense) = try pass.encodePruned(values, original: original, like: weight.descriptor)
    return CalibratedModule(result: result, dense: dense, warnings: solved.warnings)
  }
}

/// Wanda (Sun et al. 2023, arXiv 2306.11695) with its norms gathered in the same run, layer by
/// layer (each layer's ||X_j|| measured on the outputs of the already pruned layers before it, as
/// llm-compressor's sequential pipeline does), instead of read from a `calibrate` file. With
/// `refit` (the default, `--refit ls`) the kept weights are then the exact least-squares solution
/// for Wanda's mask under H = XᵀX (`Refit`), which the run then gathers too.
public struct WandaMethod: CalibratedMethod {
  public let pass: PrunePass
  /// The least-squares refit for Wanda's mask; nil for Wanda's own values (`--refit none`).
  public let refit: Refit?

  public init(pass: PrunePass) {
    self.pass = pass
    let configuration = pass.configuration
    refit = configuration.refit == .ls ? Refit(dampening: configuration.dampening) : nil
  }

  public var name: String { "wanda" }
  public var needsGram: Bool { refit != nil }
  public var fallback: String { "pruned by magnitude" }

  public func selects(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool {
    try pass.calibrates(weight, module: module)
  }

  public func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs) throws(SwiftCompressError)
    -> CalibratedModule
  {
    let norms = inputs.sumSquares.map { Float($0.squareRoot()) }
    let scoring = pass.scoring(with: WandaCriterion(norms: [module: norms]))
    guard case .transform(let outputs, _) = try scoring.plan(weight.descriptor), outputs.count == 1 else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "not planned for pruning")
    }
    let scored = try scoring.transform(weight, outputs: outputs)
    guard case .owned(let bytes) = scored.outputs.first else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "pruned outputs must be owned")
    }
    var values = bytes.withUnsafeBytes {
      Float32Conversion.floats($0, dtype: weight.descriptor.dtype, count: weight.elementCount)
    }
    if let refit, let gram = inputs.gram {
      let (rows, columns) = (weight.descriptor.shape[0], weight.descriptor.shape[1])
      values =
        refit.solveMasked(
          original: weight.floats(), start: values, rows: rows, columns: columns, hessian: gram
        ).values
    }
    let (result, dense) = try pass.encodePruned(values, original: weight.floats(), like: weight.descriptor)
    return CalibratedModule(result: result, dense: dense)
  }
}

extension PrunePass {
  /// Whether a calibrated method compresses `weight` (a planned, unstructured prune of a module weight).
  func calibrates(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool {
    guard case .transform(let outputs, _) = try plan(weight), !outputs.isEmpty else { return false }
    return LinearWeights.module(of: weight.name) == module
  }

  /// The outputs of values a calibrated method already pruned (zero where pruned), in the pass's
  /// format, with the error against `original`, and the dense values they decode to.
  func encodePruned(_ values: [Float], original: [Float], like descriptor: TensorDescriptor)
    throws(SwiftCompressError) -> (TransformResult, [Float])
  {
    guard case .transform(let outputs, _) = try plan(descriptor) else {
      throw .passBrokePlan(pass: Self.identifier, tensor: descriptor.name, reason: "not planned for pruning")
    }
    let (rows, columns) = (descriptor.shape[0], descriptor.shape[1])
    let bytes = DenseCodec.encode(values, as: descriptor.dtype)
    let stored = bytes.withUnsafeBytes { Float32Conversion.floats($0, dtype: descriptor.dtype, count: values.count) }
    var keep = [UInt8](repeating: 0, count: values.count)
    var rowKept = [Int](repeating: 0, count: rows)
    var over = false
    for r in 0..<rows {
      for c in 0..<columns where stored[r * columns + c] != 0 {
        keep[r * columns + c] = 1
        rowKept[r] += 1
      }
      if let pattern = configuration.pattern {
        for g in stride(from: 0, to: columns, by: pattern.m) {
          let kept = (g..<min(g + pattern.m, columns)).reduce(0) { $0 + Int(keep[r * columns + $1]) }
          if kept > pattern.n { over = true }
        }
      }
    }
    var error = ErrorAccumulator()
    original.withUnsafeBufferPointer { r in
      stored.withUnsafeBufferPointer { error.add(reference: r, reconstruction: $0) }
    }
    let zeros = stored.count - rowKept.reduce(0, +)
    var sparsity = SparsityInfo(
      target: configuration.pattern.map { 1 - Double($0.n) / Double($0.m) } ?? configuration.sparsity,
      achieved: stored.isEmpty ? 0 : Double(zeros) / Double(stored.count), zeros: zeros,
      pruned: zeros - original.filter { $0 == 0 }.count)
    if let pattern = configuration.pattern {
      sparsity.pattern = pattern.description
      sparsity.patternHolds = !over
    }
    let data: [OutputData]
    if outputs.count == 1 {
      data = [.owned(bytes)]
    } else {
      let encoded: Result<[OutputData], SwiftCompressError> = bytes.withUnsafeBytes { raw in
        Result { () throws(SwiftCompressError) -> [OutputData] in
          try SparseBitmask.encode(
            TensorInput(descriptor: descriptor, bytes: raw), keep: keep, rowKept: rowKept, rows: rows,
            columns: columns, outputs: outputs, twoFour: outputs.count == 3)
        }
      }
      data = try encoded.get()
    }
    return (TransformResult(outputs: data, reconstruction: .measured(error), sparsity: sparsity), stored)
  }
}
