import CheckpointIO
import Foundation

/// Per-input-channel activation norms for activation-aware pruning and factorization.
///
/// Two files are read: what `swiftcompress calibrate` writes (`<module>.input_sum_squares`, whose
/// square roots are the norms; see `ActivationStatistics`), or a safetensors file with one 1-D
/// tensor per linear layer, named after the module (`model.layers.0.mlp.down_proj`), holding for
/// each input channel j the L2 norm ||X_j|| of that layer's inputs over the calibration set (F32,
/// F16, BF16 or F64), as docs/algorithms.md shows how to make with transformers.
public enum CalibrationStatistics {
  /// The norms of `modules` (name, input channels), validated.
  public static func load(_ path: String, modules: [(String, Int)]) throws(SwiftCompressError) -> [String: [Float]] {
    let file: Checkpoint
    do {
      file = try Checkpoint.open(path)
    } catch {
      var reason = error.localizedDescription
      if reason.hasSuffix(".") { reason.removeLast() }  // the option's message adds its own
      throw .invalidOption(option: "--calibration", reason: reason)
    }
    var result: [String: [Float]] = [:]
    for (module, channels) in modules {
      let sumSquares = file.tensor(named: ActivationStatistics.TensorName.sumSquares(module))
      guard let tensor = sumSquares ?? file.tensor(named: module) else {
        throw .invalidModule(
          name: module,
          reason:
            "the calibration file \(path) has no statistics for this layer (expected a tensor named '\(ActivationStatistics.TensorName.sumSquares(module))' as 'swiftcompress calibrate' writes, or '\(module)'); collect them for every pruned layer or --ignore it"
        )
      }
      guard tensor.info.shape == [channels], [.f32, .f16, .bf16, .f64].contains(tensor.info.dtype) else {
        throw .invalidModule(
          name: module,
          reason:
            "its calibration statistics in \(path) are \(tensor.info.dtype.rawValue) \(tensor.info.shape); the layer has \(channels) input channels, so a 1-D float tensor of \(channels) values is needed"
        )
      }
      // (-0 becomes +0: scores must be non-negative bit patterns.)
      let values = Float32Conversion.floats(file.bytes(of: tensor), dtype: tensor.info.dtype, count: channels)
      // A sum of squares (calibrate's file) becomes the norm; a negative one is refused below.
      let norms = (sumSquares != nil ? values.map { $0 >= 0 ? $0.squareRoot() : $0 } : values).map { $0 == 0 ? 0 : $0 }
      if let bad = norms.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
        throw .invalidModule(
          name: module,
          reason: "calibration statistic \(bad) in \(path) is \(norms[bad]); norms must be finite and non-negative")
      }
      result[module] = norms
    }
    return result
  }
}
