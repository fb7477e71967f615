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
    return block(
      groups: [JSONMember(scheme.configGroupName(groupSize: groupSize), group(codec, targets: ["Linear"]))],
      format: codec.format, ignore: ignore)
  }

  /// The block of a mixed-precision checkpoint: one config group per scheme (`group_0`,
  /// `group_1`, ... as compressed-tensors names them), each targeting its modules by exact
  /// name; `format` is the groups' format when they share one, else `mixed-precision`.
  public static func block(groups: [(choice: SchemeChoice, modules: [String])], ignore: [String]) -> JSONValue {
    var members: [JSONMember] = []
    var formats: [String] = []
    for (i, entry) in groups.enumerated() {
      guard let codec = entry.choice.codec else { continue }
      members.append(JSONMember("group_\(i)", group(codec, targets: entry.modules)))
      if !formats.contains(codec.format) { formats.append(codec.format) }
    }
    return block(groups: members, format: formats.count == 1 ? formats[0] : mixedPrecisionFormat, ignore: ignore)
  }

  /// compressed-tensors' top-level format when config groups differ in format.
  public static let mixedPrecisionFormat = "mixed-precision"

  /// One config group: `codec`'s arguments for `targets`.
  static func group(_ codec: any QuantizationCodec, targets: [String]) -> JSONValue {
    .object([
      JSONMember("format", .string(codec.format)), JSONMember("input_activations", codec.inputActivations),
      JSONMember("output_activations", .null), JSONMember("targets", .array(targets.map { .string($0) })),
      JSONMember("weights", .object(codec.weightArguments)),
    ])
  }

  static func block(groups: [JSONMember], format: String, ignore: [String]) -> JSONValue {
    .object([
      JSONMember("config_groups", .object(groups)),
      JSONMember("format", .string(format)), JSONMember("global_compression_ratio", .null),
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
