import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// The calibrated methods module by module, against independent references.
@Suite struct CalibratedMethodTests {
  /// F32 tensors of a golden file by name.
  static func tensors(_ relative: String) throws -> (values: [String: [Float]], shapes: [String: [Int]]) {
    let checkpoint = try Checkpoint.open(fixture(relative))
    var values: [String: [Float]] = [:]
    var shapes: [String: [Int]] = [:]
    for tensor in checkpoint.tensors where tensor.info.dtype == .f32 {
      values[tensor.name] = Float32Conversion.floats(
        checkpoint.bytes(of: tensor), dtype: .f32, count: tensor.info.elementCount)
      shapes[tensor.name] = tensor.info.shape
    }
    return (values, shapes)
  }

  /// max|a - b| / max|b|.
  static func relative(_ a: [Float], _ b: [Float]) -> Float {
    let scale = b.reduce(0) { max($0, abs($1)) }
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
  }

  /// SVD-LLM against a numpy transcription (Scripts/reference/make_svdllm_goldens.py): the
  /// product A·B of the whitened truncated SVD at rank 12 within 1e-4 of numpy's (Float64
  /// there, Float32 here), and its output error below plain SVD's.
  @Test func svdLLMMatchesTheNumpyTranscription() throws {
    let golden = try Self.tensors("golden/calibrated/svd-llm.safetensors")
    let (weight, hessian, product) = (golden.values["weight"]!, golden.values["hessian"]!, golden.values["product"]!)
    let (rows, columns) = (48, 64)
    var pass = try FactorizePass(
      configuration: FactorizePass.Configuration(method: .svdLLM, rank: .rank(12)))
    pass.calibrationPending = true
    let name = "model.layers.0.mlp.down_proj.weight"
    let descriptor = PlannedTensor(name: name, dtype: .f32, shape: [rows, columns])
    let module = "model.layers.0.mlp.down_proj"
    let method = FactorizeMethod(pass: pass)
    #expect(try method.selects(descriptor, module: module))
    let done = try weight.withUnsafeBytes { raw in
      try method.compress(
        TensorInput(descriptor: descriptor, bytes: raw), module: module,
        inputs: ModuleInputs(count: 512, sumSquares: [], sumAbs: [], gram: hessian))
    }
    let error = Self.relative(done.dense, product)
    #expect(error <= 1e-4, "max relative difference \(error)")
    // The point of whitening: the output error tr(ΔW H ΔWᵀ) is below the plain SVD's.
    let plain = golden.values["plain"]!
    let whitened = ErrorFeedbackTests.outputError(weight, done.dense, h: hessian, rows: rows, columns: columns)
    let unwhitened = ErrorFeedbackTests.outputError(weight, plain, h: hessian, rows: rows, columns: columns)
    #expect(whitened < 0.9 * unwhitened, "\(whitened) vs \(unwhitened)")
  }
}
