import CheckpointIO
import Foundation

/// How `quantize` chooses each group's scale.
public enum ScaleSearch: String, CaseIterable, Codable, Sendable {
  /// The reference's rule: the scale maps the group's largest magnitude to the largest code.
  case none
  /// Per group, the scale (clipping factor, or for MX and NVFP4 the neighbouring scale
  /// codes) with the least squared error, in the same on-disk format.
  case mse
}

/// What the quantize pass decided for one weight and hands to the codec with its values.
public struct QuantizationContext: Sendable {
  /// How scales are chosen.
  public var scaleSearch: ScaleSearch
  /// A scale shared by the modules that read one input (NVFP4's global scale), chosen
  /// over all of them before any is encoded; nil: the codec derives it from this weight.
  public var globalScale: Float?

  public init(scaleSearch: ScaleSearch = .none, globalScale: Float? = nil) {
    self.scaleSearch = scaleSearch
    self.globalScale = globalScale
  }
}

/// A compressed-tensors quantized layout of a linear weight: its output tensors, the
/// encoder (bit for bit as compressed-tensors computes it), the decoder (the reference
/// dequantizer's arithmetic), and its part of `quantization_config`.
///
/// Tensors are named after the weight: `<weight>_packed`, `<weight>_scale`, ..., where
/// the weight is `<module>.weight` or a factor of factorize (`<module>.weight_a`).
public protocol QuantizationCodec: WeightCodec {
  /// `quantization_config.format` and the config group's `format`.
  var format: String { get }
  /// Bits per stored value.
  var bits: Int { get }

  /// The tensors storing `weight` ([rows, columns], F32, BF16 or F16) and the plan's note;
  /// throws, naming `module` and what to change, when the shape cannot be stored.
  func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  )

  /// Encodes one weight into the tensors `layout(of:module:)` planned, in that order, with
  /// the error of the reconstruction.
  func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError) -> TransformResult

  /// Whether `encode` takes a global scale chosen over modules that share an input.
  var sharesGlobalScale: Bool { get }

  /// The config group's `weights` (compressed-tensors' QuantizationArgs), in key order.
  var weightArguments: [JSONMember] { get }
  /// The config group's `input_activations`.
  var inputActivations: JSONValue { get }

  /// The codec a checkpoint's `quantization_config.format` and config group `weights`
  /// describe, or nil when they are not this codec's.
  static func described(format: String, weights: JSONValue?) -> Self?

  /// What `described(format:weights:)` accepts, for error messages ("pack-quantized (4 or 8 bits)").
  static var readableFormat: String { get }
}

extension QuantizationCodec {
  /// Whether the quantized weight keeps the name `weight` (FP8, MXFP8): readers that
  /// decide by names then take every `M.weight` for a quantized one.
  public var keepsWeightName: Bool {
    (try? densePrimary(PlannedTensor(name: "m.weight", dtype: .f8E4M3, shape: [32, 32]))) != nil
  }

  public var sharesGlobalScale: Bool { false }
  public var inputActivations: JSONValue { .null }
  public var layoutName: String { format }
}

/// Names of compressed-tensors' quantized tensors.
enum QuantizedNames {
  /// The weight a stored tensor named `<weight><suffix>` belongs to, where the weight is
  /// `.weight` or a factor `.weight_a` / `.weight_b`; nil otherwise.
  static func weight(of name: String, suffix: String) -> String? {
    guard name.hasSuffix(suffix) else { return nil }
    let base = String(name.dropLast(suffix.count))
    return [".weight", ".weight_a", ".weight_b"].contains(where: { base.hasSuffix($0) }) ? base : nil
  }

  /// Whether `name` is a companion of a quantized weight (its scale, zero point, shape
  /// or global scale).
  static func isCompanion(_ name: String) -> Bool {
    ["_scale", "_zero_point", "_shape", "_global_scale"].contains { weight(of: name, suffix: $0) != nil }
  }
}
