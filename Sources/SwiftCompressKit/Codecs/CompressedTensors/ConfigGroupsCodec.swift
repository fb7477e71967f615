import CheckpointIO
import Foundation

/// A checkpoint whose `quantization_config` has several config groups (mixed precision):
/// each module's weight decodes with the codec of the group that targets it, chosen as
/// compressed-tensors chooses: modules in `ignore` are not quantized; otherwise the first
/// group that names the module (exactly, or by a `re:` expression matched from the start),
/// else the first group that targets `Linear`.
public struct ConfigGroupsCodec: WeightCodec {
  struct Group: Sendable {
    var name: String
    var nameRules: [IgnoreRule]
    var linear: Bool
    var codec: any QuantizationCodec
  }

  let groups: [Group]
  let ignore: [IgnoreRule]

  /// The codec of a block's groups; throws naming a group no registered codec reads.
  init(_ quantization: JSONValue, path: String) throws(SwiftCompressError) {
    var groups: [Group] = []
    for group in LoaderContract.groups(of: quantization) {
      guard let codec = group.codec else {
        let bits = group.weights?["num_bits"]?.uint64Value ?? 0
        throw .invalidFile(
          path: path,
          reason:
            "config group '\(group.name)': quantization format '\(group.format)' with \(bits)-bit weights is not supported; supported: \(QuantizationConfig.readableFormats)"
        )
      }
      groups.append(
        Group(name: group.name, nameRules: group.nameRules, linear: group.targets.contains("Linear"), codec: codec))
    }
    self.groups = groups
    ignore = (quantization["ignore"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { try? IgnoreRule($0) } }
  }

  public var layoutName: String {
    var names: [String] = []
    for group in groups where !names.contains(group.codec.layoutName) { names.append(group.codec.layoutName) }
    return "mixed-precision (\(names.joined(separator: ", ")))"
  }

  /// The module a stored tensor of a quantized weight (or of a quantized factor of
  /// factorize, `<module>.weight_a_packed`) belongs to.
  static func module(of name: String) -> String? {
    for suffix in ["_global_scale", "_zero_point", "_packed", "_shape", "_scale", ""] where name.hasSuffix(suffix) {
      let weight = String(name.dropLast(suffix.count))
      for tail in [".weight", ".weight_a", ".weight_b"] where weight.hasSuffix(tail) {
        return String(weight.dropLast(tail.count))
      }
    }
    return nil
  }

  /// The codec of the group that targets the module of `name`, nil when none does.
  func codec(of name: String) -> (any QuantizationCodec)? {
    guard let module = Self.module(of: name), !ignore.contains(where: { $0.matches(module) }) else { return nil }
    return (groups.first { $0.nameRules.contains { $0.matches(module) } } ?? groups.first(where: \.linear))?.codec
  }

  public func densePrimary(_ stored: TensorDescriptor) throws(SwiftCompressError) -> DenseWeight? {
    try codec(of: stored.name)?.densePrimary(stored)
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool {
    codec(of: stored.name)?.isCompanion(stored) ?? false
  }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    guard let codec = codec(of: primary.descriptor.name) else {
      throw .invalidTensor(name: primary.descriptor.name, reason: "no config group targets its module")
    }
    return try codec.decode(primary, as: weight)
  }
}
