import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// GPTQ, SparseGPT and Wanda module by module against llm-compressor 0.14's own per-module
/// functions (`quantize_weight`, `sparsify_weight`) on the same weights and H
/// (Fixtures/golden/calibrated/, Scripts/reference/make_calibrated_goldens.py).
///
/// Tolerances: Wanda involves no accumulation and must match exactly. GPTQ and SparseGPT sum
/// in another order (OpenBLAS sgemm and LAPACK here, torch there), so a value near a rounding
/// boundary may land on the neighbouring grid point and the difference then feeds forward
/// along its row: asserted are (1) the fraction of values equal to the reference's, (2) the
/// output error tr(ΔW H ΔWᵀ) within 2% of the reference's, (3) the same grid (scales) and mask
/// structure.
@Suite struct CalibratedGoldenTests {
  struct Case: Sendable, CustomTestStringConvertible {
    var file: String
    var scheme: QuantizationScheme
    var groupSize: Int
    var order: ErrorFeedback.Order
    /// The least fraction of values equal to the reference's (measured, less a margin).
    var agreement: Double
    /// NVFP4's decoder (compressed-tensors') computes in BF16 whatever the model's dtype: our
    /// values are the decoded ones, the reference's are its F32 fake-quantized ones, so they
    /// are compared after rounding the reference's to BF16.
    var bf16 = false
    var testDescription: String { file }
  }

  static let gptqCases: [Case] = [
    Case(file: "gptq-w4a16-g128-actorder-none", scheme: .w4a16, groupSize: 128, order: .none, agreement: 0.98),
    Case(file: "gptq-w4a16-g128-actorder-static", scheme: .w4a16, groupSize: 128, order: .static, agreement: 0.98),
    Case(
      file: "gptq-w4a16-asym-g128-actorder-static-dead", scheme: .w4a16Asym, groupSize: 128, order: .static,
      agreement: 0.98),
    Case(file: "gptq-w8a16-channel-actorder-none-512", scheme: .w8a16, groupSize: 0, order: .none, agreement: 0.9),
    Case(
      file: "gptq-nvfp4a16-actorder-none", scheme: .nvfp4, groupSize: 16, order: .none, agreement: 0.9, bf16: true),
    Case(file: "gptq-mxfp4a16-actorder-none", scheme: .mxfp4, groupSize: 32, order: .none, agreement: 0.98),
    Case(file: "gptq-fp8-channel-actorder-static", scheme: .fp8Dynamic, groupSize: 0, order: .static, agreement: 0.9),
  ]

  static func golden(_ name: String) throws -> [String: [Float]] {
    try CalibratedMethodTests.tensors("golden/calibrated/\(name).safetensors").values
  }

  static let module = "model.layers.0.mlp.down_proj"

  static func input(_ weight: [Float], rows: Int, columns: Int, _ body: (TensorInput) throws -> CalibratedModule)
    rethrows -> CalibratedModule
  {
    try weight.withUnsafeBytes { raw in
      try body(
        TensorInput(
          descriptor: PlannedTensor(name: module + ".weight", dtype: .f32, shape: [rows, columns]), bytes: raw))
    }
  }

  @Test(arguments: gptqCases)
  func gptqMatchesLLMCompressor(_ c: Case) throws {
    let g = try Self.golden(c.file)
    let (weight, hessian) = (g["weight"]!, g["hessian"]!)
    var reference = g["quantized"]!
    if c.bf16 {
      reference = DenseCodec.encode(reference, as: .bf16).withUnsafeBytes {
        Float32Conversion.floats($0, dtype: .bf16, count: reference.count)
      }
    }
    let columns = Int(Double(hessian.count).squareRoot())
    let rows = weight.count / columns
    let pass = try QuantizePass(
      configuration: QuantizePass.Configuration(
        scheme: c.scheme, groupSize: c.groupSize, method: .gptq, actorder: c.order, refit: .none))
    let method = GPTQMethod(pass: pass)
    let done = try Self.input(weight, rows: rows, columns: columns) {
      try method.compress(
        $0, module: Self.module, inputs: ModuleInputs(count: 1, sumSquares: [], sumAbs: [], gram: hessian))
    }
    let equal = zip(done.dense, reference).filter { $0 == $1 }.count
    let agreement = Double(equal) / Double(reference.count)
    let ours = ErrorFeedbackTests.outputError(weight, done.dense, h: hessian, rows: rows, columns: columns)
    let theirs = ErrorFeedbackTests.outputError(weight, reference, h: hessian, rows: rows, columns: columns)
    print("\(c.file): \(equal)/\(reference.count) equal, output error \(ours) vs \(theirs) (\(ours / theirs))")
    #expect(agreement >= c.agreement, "\(equal) of \(reference.count) values equal")
    #expect(abs(ours / theirs - 1) <= 0.02, "output error \(ours) vs the reference's \(theirs)")
  }

  @Test(arguments: ["sparsegpt-unstructured-50", "sparsegpt-2of4-dead"])
  func sparseGPTMatchesLLMCompressor(_ file: String) throws {
    let g = try Self.golden(file)
    let (weight, hessian, reference) = (g["weight"]!, g["hessian"]!, g["pruned"]!)
    let columns = Int(Double(hessian.count).squareRoot())
    let rows = weight.count / columns
    let twoFour = file.contains("2of4")
    var configuration = PrunePass.Configuration(
      method: .sparsegpt, sparsity: twoFour ? nil : 0.5, pattern: twoFour ? NMPattern("2:4") : nil)
    configuration.blockSize = 128
    configuration.refit = .none  // the reference's values; the refit is tested in RefitTests
    let method = SparseGPTMethod(pass: try PrunePass(configuration: configuration))
    let done = try Self.input(weight, rows: rows, columns: columns) {
      try method.compress(
        $0, module: Self.module, inputs: ModuleInputs(count: 1, sumSquares: [], sumAbs: [], gram: hessian))
    }
    let sameMask = zip(done.dense, reference).filter { ($0 == 0) == ($1 == 0) }.count
    let ours = ErrorFeedbackTests.outputError(weight, done.dense, h: hessian, rows: rows, columns: columns)
    let theirs = ErrorFeedbackTests.outputError(weight, reference, h: hessian, rows: rows, columns: columns)
    print("\(file): mask \(sameMask)/\(reference.count) equal, output error \(ours) vs \(theirs) (\(ours / theirs))")
    #expect(Double(sameMask) / Double(reference.count) >= 0.98)
    #expect(abs(ours / theirs - 1) <= 0.02, "output error \(ours) vs the reference's \(theirs)")
    let zeros = done.dense.filter { $0 == 0 }.count
    #expect(zeros == reference.filter { $0 == 0 }.count)
  }

  @Test(arguments: ["wanda-unstructured-50", "wanda-2of4-dead"])
  func wandaMatchesLLMCompressorExactly(_ file: String) throws {
    let g = try Self.golden(file)
    let (weight, scalars, reference) = (g["weight"]!, g["row_scalars"]!, g["pruned"]!)
    let columns = scalars.count
    let rows = weight.count / columns
    let twoFour = file.contains("2of4")
    var configuration = PrunePass.Configuration(
      method: .wanda, sparsity: twoFour ? nil : 0.5, pattern: twoFour ? NMPattern("2:4") : nil)
    configuration.refit = .none  // the reference's values; the refit is tested in RefitTests
    let method = WandaMethod(pass: try PrunePass(configuration: configuration))
    let done = try Self.input(weight, rows: rows, columns: columns) {
      try method.compress(
        $0, module: Self.module,
        inputs: ModuleInputs(count: 1, sumSquares: scalars.map { Double($0) }, sumAbs: [], gram: nil))
    }
    #expect(done.dense == reference)
  }
}
