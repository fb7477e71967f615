import CheckpointIO
import Foundation

/// A quantization scheme by llm-compressor's preset name: the codec that stores its
/// weights and the name of its config group.
public struct QuantizationScheme: Sendable, Hashable, Codable, CustomStringConvertible, CaseIterable, RawRepresentable {
  /// The preset's name (`W4A16`, `NVFP4A16`).
  public let rawValue: String
  /// The name the plan's notes use (`NVFP4` for `NVFP4A16`).
  let label: String
  /// How a scheme with fixed scale groups groups them ("groups of 16"); nil for the
  /// integer schemes, whose group size is chosen.
  public let fixedGrouping: String?
  /// The codec for a group size (which only the integer schemes use).
  private let makeCodec: @Sendable (_ groupSize: Int) -> any QuantizationCodec

  init(
    _ name: String, label: String? = nil, fixedGrouping: String? = nil,
    codec: @escaping @Sendable (_ groupSize: Int) -> any QuantizationCodec
  ) {
    rawValue = name
    self.label = label ?? name
    self.fixedGrouping = fixedGrouping
    makeCodec = codec
  }

  /// The codec storing this scheme's weights with `groupSize` inputs per scale (0: one
  /// scale per output channel); schemes with fixed groups ignore it.
  public func codec(groupSize: Int) -> any QuantizationCodec { makeCodec(groupSize) }

  /// Bits per quantized value.
  public var bits: Int { codec(groupSize: 0).bits }
  /// The compressed-tensors format name written in `quantization_config`.
  public var format: String { codec(groupSize: 0).format }

  /// The config group's name: the preset's, or for an integer scheme with one scale per
  /// output channel (not a preset) `config_group_0`, as the reference names it.
  func configGroupName(groupSize: Int) -> String {
    fixedGrouping == nil && groupSize == 0 ? "config_group_0" : rawValue
  }

  public var description: String { rawValue }

  /// Parses a scheme name, case-insensitively; each preset's label (MXFP4, NVFP4) is
  /// accepted too.
  public init?(name: String) {
    let match = { (s: QuantizationScheme) in
      s.rawValue.caseInsensitiveCompare(name) == .orderedSame || s.label.caseInsensitiveCompare(name) == .orderedSame
    }
    guard let scheme = Self.allCases.first(where: match) else { return nil }
    self = scheme
  }

  public init?(rawValue: String) {
    guard let scheme = Self.allCases.first(where: { $0.rawValue == rawValue }) else { return nil }
    self = scheme
  }

  public static func == (a: QuantizationScheme, b: QuantizationScheme) -> Bool { a.rawValue == b.rawValue }
  public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

  public init(from decoder: any Decoder) throws {
    let name = try decoder.singleValueContainer().decode(String.self)
    guard let scheme = QuantizationScheme(rawValue: name) else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "unknown quantization scheme '\(name)'"))
    }
    self = scheme
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(rawValue)
  }
}

/// The presets this build writes, and the codecs `decompress`, `diff` and `verify` read:
/// the registry a new layout joins.
extension QuantizationScheme {
  public static let w8a16 = QuantizationScheme("W8A16") { IntegerPackCodec(bits: 8, symmetric: true, groupSize: $0) }
  public static let w4a16 = QuantizationScheme("W4A16") { IntegerPackCodec(bits: 4, symmetric: true, groupSize: $0) }
  public static let w4a16Asym = QuantizationScheme("W4A16_ASYM") {
    IntegerPackCodec(bits: 4, symmetric: false, groupSize: $0)
  }
  public static let w2a16 = QuantizationScheme("W2A16") { IntegerPackCodec(bits: 2, symmetric: true, groupSize: $0) }
  public static let w3a16 = QuantizationScheme("W3A16") { IntegerPackCodec(bits: 3, symmetric: true, groupSize: $0) }
  public static let w5a16 = QuantizationScheme("W5A16") { IntegerPackCodec(bits: 5, symmetric: true, groupSize: $0) }
  public static let w6a16 = QuantizationScheme("W6A16") { IntegerPackCodec(bits: 6, symmetric: true, groupSize: $0) }
  public static let fp8Dynamic = QuantizationScheme("FP8_DYNAMIC", fixedGrouping: "one scale per output channel") {
    _ in Float8Codec(block: nil)
  }
  public static let fp8Block = QuantizationScheme("FP8_BLOCK", fixedGrouping: "one scale per 128x128 block") { _ in
    Float8Codec(block: [128, 128])
  }
  public static let mxfp4 = QuantizationScheme("MXFP4A16", label: "MXFP4", fixedGrouping: "groups of 32") { _ in
    MXFP4Codec()
  }
  public static let nvfp4 = QuantizationScheme("NVFP4A16", label: "NVFP4", fixedGrouping: "groups of 16") { _ in
    NVFP4Codec()
  }
  public static let mxfp8 = QuantizationScheme("MXFP8A16", label: "MXFP8", fixedGrouping: "groups of 32") { _ in
    MXFP8Codec()
  }
  public static let mxfp6 = QuantizationScheme("MXFP6A16", label: "MXFP6", fixedGrouping: "groups of 32") { _ in
    MXFP6Codec()
  }

  /// Every preset, in the order help and tests list them.
  public static let allCases: [QuantizationScheme] = [
    w8a16, w4a16, w4a16Asym, fp8Dynamic, fp8Block, mxfp4, nvfp4, w2a16, w3a16, w5a16, w6a16, mxfp8, mxfp6,
  ]

  /// The codec types a checkpoint's `quantization_config` may name.
  static let codecTypes: [any QuantizationCodec.Type] = [
    IntegerPackCodec.self, Float8Codec.self, MXFP4Codec.self, NVFP4Codec.self, MXFP8Codec.self, MXFP6Codec.self,
  ]
}
