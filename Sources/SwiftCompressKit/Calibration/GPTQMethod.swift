import CheckpointIO
import Foundation

/// GPTQ as a calibrated method of the quantize pass: for each module the pass quantizes, the
/// grid round-to-nearest would choose (the reference's scales or the MSE search's, NVFP4's
/// shared global scale) is fixed from the original weight, `ErrorFeedback` rounds the columns
/// to it while moving their errors into the columns not yet rounded, and the codec writes the
/// result in the same layout as round-to-nearest (so every loader reads it the same way).
/// With `refit` (the default, `--refit ls`) the values, and integer grids' scales, are then refit
/// by least squares under the same H (`Refit`).
public struct GPTQMethod: CalibratedMethod {
  /// The quantize pass, prepared for the checkpoint (global scales, model adapter).
  public let pass: QuantizePass
  public let feedback: ErrorFeedback
  /// The least-squares refit after GPTQ; nil for GPTQ's own values (`--refit none`).
  public let refit: Refit?

  public init(pass: QuantizePass) {
    self.pass = pass
    let configuration = pass.configuration
    feedback = ErrorFeedback(
      blockSize: configuration.blockSize, dampening: configuration.dampening, order: configuration.actorder)
    refit = configuration.refit == .ls ? Refit(dampening: configuration.dampening) : nil
  }

  public var name: String { "gptq" }
  public var needsGram: Bool { true }
  public var fallback: String { "rounded to nearest" }

  public func selects(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool {
    guard case .transform(let outputs, _) = try pass.plan(weight), !outputs.isEmpty else { return false }
    return LinearWeights.module(of: weight.name) == module
  }

  public func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs) throws(SwiftCompressError)
    -> CalibratedModule
  {
    guard let rotation = pass.rotation else { return try compress(weight, module: module, inputs: inputs, gram: nil) }
    // The online rotation: the quantized weight is W R and its input x R, so GPTQ solves for
    // W R with the second moment of x R, R XᵀX R; the later layers compute with Q R (= Q Rᵀ),
    // the weight in the original basis, what decompress gives back.
    guard let gram = inputs.gram, weight.descriptor.shape.count == 2 else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "no input second moment")
    }
    let columns = weight.descriptor.shape[1]
    let bytes = DenseCodec.encode(try pass.rotated(weight, rotation), as: weight.descriptor.dtype)
    let rotatedGram = rotation.conjugated(gram, size: columns)
    let result: Result<CalibratedModule, SwiftCompressError> = bytes.withUnsafeBytes { raw in
      Result { () throws(SwiftCompressError) -> CalibratedModule in
        try compress(
          TensorInput(descriptor: weight.descriptor, bytes: raw), module: module, inputs: inputs, gram: rotatedGram)
      }
    }
    var done = try result.get()
    rotation.apply(&done.dense, rowLength: columns)
    return done
  }

  /// GPTQ on `weight` with `gram` (or the inputs' own).
  func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs, gram: [Float]?)
    throws(SwiftCompressError) -> CalibratedModule
  {
    guard let gram = gram ?? inputs.gram, weight.descriptor.shape.count == 2 else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "no input second moment")
    }
    let (rows, columns) = (weight.descriptor.shape[0], weight.descriptor.shape[1])
    let context = QuantizationContext(
      scaleSearch: pass.configuration.scaleSearch, globalScale: pass.globalScales[module])
    let grid = try pass.codec(ofModule: module).grid(for: weight, context: context)
    let original = weight.floats()
    let solved = try feedback.run(
      weight: original, rows: rows, columns: columns, hessian: gram, module: module, shared: inputs.shared
    ) { column, values in grid.round(column: column, values: values) }
    var (onGrid, values) = (grid, solved.values)
    if let refit {
      let refined = refit.refine(
        grid: grid, original: original, start: solved.values, hessian: gram, dtype: weight.descriptor.dtype)
      (onGrid, values) = (refined.grid, refined.result.values)
    }
    var result = try onGrid.encode(values: values)
    // What decompress gives back, for the next layers and the error.
    let (planned, _) = try pass.codec(ofModule: module).layout(of: weight.descriptor, module: module)
    var bytes: [[UInt8]] = []
    for output in result.outputs {
      guard case .owned(let data) = output else {
        throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "the grid's outputs must be owned")
      }
      bytes.append(data)
    }
    let dense = try pass.codec(ofModule: module).decode(outputs: planned, data: bytes, shape: weight.descriptor.shape)
    var error = ErrorAccumulator()
    original.withUnsafeBufferPointer { r in
      dense.withUnsafeBufferPointer { o in error.add(reference: r, reconstruction: o) }
    }
    result.reconstruction = .measured(error)
    return CalibratedModule(result: result, dense: dense, warnings: solved.warnings)
  }
}
