import CheckpointIO
import Foundation

/// compressed-tensors' `quantization_config`, both ways: the block a scheme's codec
/// writes (as compressed-tensors 0.20 writes it), and the codec a checkpoint's block names.
public enum QuantizationConfig {
  /// The compressed-tensors version written in the block.
  public static let compressedTensorsVersion = "0.20.0"

  /// The `quantization_config` block of `scheme` with `groupSize` and `ignore`.
  public static func block(scheme: QuantizationScheme, groupSize: Int, ignore: [String]) -> JSONValue {
    let codec = scheme.codec(groupSize: groupSize)
    let group: JSONValue = .object([
      JSONMember("format", .string(codec.format)), JSONMember("input_activations", codec.inputActivations),
      JSONMember("output_activations", .null), JSONMember("targets", .array([.string("Linear")])),
      JSONMember("weights", .object(codec.weightArguments)),
    ])
    return .object([
      JSONMember("config_groups", .object([JSONMember(scheme.configGroupName(groupSize: groupSize), group)])),
      JSONMember("format", .string(codec.format)), JSONMember("global_compression_ratio", .null),
      JSONMember("ignore", .array(ignore.map { .string($0) })),
      JSONMember("kv_cache_scheme", .null), JSONMember("moe_sparsity_config", .null),
      JSONMember("quant_method", .string("compressed-tensors")),
      JSONMember("quantization_status", .string("compressed")), JSONMember("transform_config", .object([])),
      JSONMember("version", .string(compressedTensorsVersion)),
    ])
  }

  /// The codec a `quantization_config` block describes (its format and first config
  /// group's weights), or nil when no registered codec reads it.
  public static func codec(of block: JSONValue) -> (any QuantizationCodec)? {
    codec(format: block["format"]?.stringValue ?? "", weights: block["config_groups"]?.members?.first?.value["weights"])
  }

  /// The codec a config group's format and `weights` describe, or nil.
  static func codec(format: String, weights: JSONValue?) -> (any QuantizationCodec)? {
    for type in QuantizationScheme.codecTypes {
      if let codec = type.described(format: format, weights: weights) { return codec }
    }
    return nil
  }

  /// The formats the registered codecs read, for error messages.
  static var readableFormats: String {
    QuantizationScheme.codecTypes.map { $0.readableFormat }.joined(separator: ", ")
  }
}
