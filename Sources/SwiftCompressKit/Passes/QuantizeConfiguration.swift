import CheckpointIO
import Foundation

extension QuantizePass {
  /// The quantize options, as the command line, a recipe stage (snake_case keys) and the
  /// pass registry's JSON give them.
  public struct Configuration: Codable, Sendable, Equatable {
    public var scheme: QuantizationScheme
    /// Inputs per group (the row length must be a multiple); 0 for one scale per output
    /// channel (integer schemes: compressed-tensors' `channel` strategy).
    public var groupSize: Int
    /// Modules left unquantized and listed in `quantization_config.ignore`: exact module
    /// names, or `re:` followed by a regular expression matched from the start of the name.
    public var ignore: [String]

    /// How scales are chosen: round-to-nearest from the group maximum (the reference's
    /// rule), or the scale that minimises the group's squared error.
    public var scaleSearch: ScaleSearch

    // The value of each option left out.
    public static let defaultGroupSize = 128
    public static let defaultIgnore = ["lm_head"]
    public static let defaultScaleSearch = ScaleSearch.none

    public init(
      scheme: QuantizationScheme, groupSize: Int = defaultGroupSize, ignore: [String] = defaultIgnore,
      scaleSearch: ScaleSearch = defaultScaleSearch
    ) {
      self.scheme = scheme
      self.groupSize = groupSize
      self.ignore = ignore
      self.scaleSearch = scaleSearch
    }

    enum CodingKeys: String, CodingKey {
      case scheme, groupSize, ignore, scaleSearch
    }

    /// Every key but `scheme` may be left out.
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      self.init(
        scheme: try c.decode(QuantizationScheme.self, forKey: .scheme),
        groupSize: try c.decodeIfPresent(Int.self, forKey: .groupSize) ?? Self.defaultGroupSize,
        ignore: try c.decodeIfPresent([String].self, forKey: .ignore) ?? Self.defaultIgnore,
        scaleSearch: try c.decodeIfPresent(ScaleSearch.self, forKey: .scaleSearch) ?? Self.defaultScaleSearch)
    }
  }
}

/// A recipe's quantize stage: the quantize options, and with `residual_rank` a low-rank
/// correction of the quantization error (``LowRankResidualPass``).
public struct QuantizeStageConfiguration: RecipeStageConfiguration, Equatable {
  /// Its keys sit beside the others in the stage.
  public var quantize: QuantizePass.Configuration
  /// The rank of the correction; nil for plain quantization.
  public var residualRank: Int?
  /// Alternations of the correction (only with `residualRank`; nil for the default).
  public var residualIterations: Int?

  public init(quantize: QuantizePass.Configuration, residualRank: Int? = nil, residualIterations: Int? = nil) {
    self.quantize = quantize
    self.residualRank = residualRank
    self.residualIterations = residualIterations
  }

  public static let stageKind = StageKind.quantize
  public static let optionKeys = [
    "scheme", "group_size", "scale_search", "ignore", "residual_rank", "residual_iterations",
  ]
  public static let overrideKeys = ["scale_search"]

  enum CodingKeys: String, CodingKey {
    case quantize, residualRank, residualIterations
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    quantize = try c.decode(QuantizePass.Configuration.self, forKey: .quantize)
    residualRank = try c.decodeIfPresent(Int.self, forKey: .residualRank)
    if residualRank == nil, c.contains(.residualIterations) {
      throw DecodingError.dataCorruptedError(
        forKey: .residualIterations, in: c, debugDescription: "needs residual_rank (the rank of the low-rank part)")
    }
    residualIterations = try c.decodeIfPresent(Int.self, forKey: .residualIterations)
  }

  public func pass() throws(SwiftCompressError) -> any CompressionPass {
    guard let residualRank else { return try QuantizePass(configuration: quantize) }
    var configuration = LowRankResidualPass.Configuration(quantize: quantize, rank: residualRank)
    if let residualIterations { configuration.iterations = residualIterations }
    return try LowRankResidualPass(configuration: configuration)
  }
}

extension QuantizePass {
  public var recipeStage: (any RecipeStageConfiguration)? {
    QuantizeStageConfiguration(quantize: configuration)
  }
}
