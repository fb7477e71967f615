import CheckpointIO
import Foundation
import LinearAlgebra

/// SVD-LLM and ASVD as calibrated methods of the factorize pass, each module factorized from its
/// inputs at the moment its layer is compressed (after the layers before it).
/// - svd-llm: S = the lower Cholesky factor of XᵀX + λI (λ = `dampening` x mean(diag), raised
///   tenfold while the factorization fails), W·S ≈ U_k Σ_k V_kᵀ, A = U_k Σ_k^½, B = Σ_k^½ V_kᵀ S⁻¹:
///   the truncation that minimises the output error ||(W - AB) X||, not the weight error.
/// - asvd: s_j = (Σ|x_j| / tokens)^½, W·diag(s) ≈ A B', B = B'·diag(1/s).
public struct FactorizeMethod: CalibratedMethod {
  public let pass: FactorizePass
  /// svd-llm's relative dampening of XᵀX.
  public var dampening = 1e-6

  public init(pass: FactorizePass) { self.pass = pass }

  public var name: String { pass.configuration.method.rawValue }
  public var needsGram: Bool { pass.configuration.method == .svdLLM }
  public var fallback: String { "factorized by plain SVD" }

  public func selects(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool {
    guard case .transform(let outputs, _) = try pass.plan(weight), !outputs.isEmpty else { return false }
    return LinearWeights.module(of: weight.name) == module
  }

  public func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs) throws(SwiftCompressError)
    -> CalibratedModule
  {
    guard case .transform(let outputs, _) = try pass.plan(weight.descriptor) else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "not planned for factorization")
    }
    var warnings: [String] = []
    var result: TransformResult
    if pass.configuration.method == .svdLLM {
      guard let gram = inputs.gram else {
        throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "no input second moment")
      }
      let (factor, used) = try Self.whitening(
        gram, columns: weight.descriptor.shape[1], dampening: dampening, module: module)
      if used > dampening {
        warnings.append("\(module): XᵀX is not positive definite; dampening raised to \(used)")
      }
      result = try pass.factorize(weight, outputs: outputs, whitening: factor)
    } else {
      var scoped = pass
      let tokens = Double(max(inputs.count, 1))
      scoped.activationScales[module] = inputs.sumAbs.map { Float(($0 / tokens).squareRoot()) }
      result = try scoped.factorize(weight, outputs: outputs)
    }
    guard case .dense(let dense) = result.reconstruction else {
      throw .passBrokePlan(pass: name, tensor: weight.descriptor.name, reason: "factors without their product")
    }
    var error = ErrorAccumulator()
    let original = weight.floats()
    original.withUnsafeBufferPointer { r in
      dense.withUnsafeBufferPointer { error.add(reference: r, reconstruction: $0) }
    }
    result.reconstruction = .measured(error)
    return CalibratedModule(result: result, dense: dense, warnings: warnings)
  }

  /// The lower Cholesky factor of XᵀX + λ·mean(diag)·I, with λ raised tenfold up to six times.
  static func whitening(_ gram: [Float], columns: Int, dampening: Double, module: String) throws(SwiftCompressError)
    -> (Matrix, Double)
  {
    let mean = (0..<columns).reduce(0.0) { $0 + Double(gram[$1 * columns + $1]) } / Double(max(columns, 1))
    var fraction = dampening
    for _ in 0...6 {
      var damped = gram
      for j in 0..<columns { damped[j * columns + j] += Float(fraction * max(mean, 1e-30)) }
      if let matrix = try? Matrix(rows: columns, columns: columns, columnMajor: damped),
        let factor = try? cholesky(matrix)
      {
        return (factor, fraction)
      }
      fraction *= 10
    }
    throw .invalidModule(
      name: module,
      reason:
        "its input second moment XᵀX is not positive definite even with dampening \(fraction / 10); use more calibration samples, or --ignore \(module)"
    )
  }
}
