import CheckpointIO
import Foundation

/// How `quantize` turns weights into codes.
public enum QuantizationMethod: String, Codable, Sendable, CaseIterable {
  /// Round-to-nearest on the grid (the reference's `model_free_ptq`, `QuantizationModifier`).
  case rtn
  /// GPTQ: round column by column, moving each column's error into the columns not yet
  /// rounded, weighted by the inputs' second moment (needs calibration data).
  case gptq
}

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

    /// Round-to-nearest, or GPTQ from calibration data (the command's `--data`/`--tokens`).
    public var method: QuantizationMethod
    /// GPTQ: λ = dampening x mean(diag H) added to H's diagonal.
    public var dampening: Double
    /// GPTQ: columns per lazy batch update.
    public var blockSize: Int
    /// GPTQ: the order columns are visited in.
    public var actorder: ErrorFeedback.Order
    /// The block of the online block-wise Hadamard rotation (`OnlineRotation`) of every
    /// quantized module's input, written as `transform_config`; nil for none.
    public var rotationBlock: Int?
    /// GPTQ: the least-squares refit of the values (and integer scales) on the grid after GPTQ
    /// (`Refit`), or none (llm-compressor's values).
    public var refit: Refit.Mode
    /// `--scheme-for REGEX=SCHEME`: weights whose name a rule's expression is found in are
    /// stored as its scheme (or kept); later rules win. The output then holds one
    /// compressed-tensors config group per scheme.
    public var schemeFor: [SchemeRule]
    /// `--target-bpw` / `--target-size`: choose one of `candidates` per module to minimise
    /// the estimated loss within this size (`Allocator`); nil for none.
    public var target: AllocationTarget?
    /// The schemes the allocation chooses from.
    public var candidates: [SchemeChoice]
    /// `calibrate`'s statistics file: the allocation then weighs each input channel's error by
    /// its second moment (`Sensitivity`); nil: the weight error alone.
    public var statistics: String?

    // The value of each option left out.
    public static let defaultGroupSize = 128
    public static let defaultIgnore = ["lm_head"]
    public static let defaultScaleSearch = ScaleSearch.none
    public static let defaultMethod = QuantizationMethod.rtn
    public static let defaultDampening = ErrorFeedback.defaultDampening
    public static let defaultBlockSize = ErrorFeedback.defaultBlockSize
    public static let defaultActorder = ErrorFeedback.Order.static
    public static let defaultRefit = Refit.Mode.none
    public static let defaultCandidates = SchemeChoice.defaultCandidates

    public init(
      scheme: QuantizationScheme, groupSize: Int = defaultGroupSize, ignore: [String] = defaultIgnore,
      scaleSearch: ScaleSearch = defaultScaleSearch, method: QuantizationMethod = defaultMethod,
      dampening: Double = defaultDampening, blockSize: Int = defaultBlockSize,
      actorder: ErrorFeedback.Order = defaultActorder, rotationBlock: Int? = nil,
      refit: Refit.Mode = defaultRefit, schemeFor: [SchemeRule] = [], target: AllocationTarget? = nil,
      candidates: [SchemeChoice] = defaultCandidates, statistics: String? = nil
    ) {
      self.scheme = scheme
      self.groupSize = groupSize
      self.ignore = ignore
      self.scaleSearch = scaleSearch
      self.method = method
      self.dampening = dampening
      self.blockSize = blockSize
      self.actorder = actorder
      self.rotationBlock = rotationBlock
      self.refit = refit
      self.schemeFor = schemeFor
      self.target = target
      self.candidates = candidates
      self.statistics = statistics
    }

    /// What a weight no rule and no allocation names is stored as.
    public var defaultChoice: SchemeChoice { SchemeChoice(scheme: scheme, groupSize: groupSize) }

    /// Whether weights may be stored in more than one scheme.
    public var isMixed: Bool { !schemeFor.isEmpty || target != nil }

    enum CodingKeys: String, CodingKey {
      case scheme, groupSize, ignore, scaleSearch, method, dampening, blockSize, actorder, rotationBlock, refit
      case schemeFor, targetBpw, targetSize, candidates, statistics
    }

    /// GPTQ's keys are written only for GPTQ, so round-to-nearest recipes read as before.
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(scheme, forKey: .scheme)
      try c.encode(groupSize, forKey: .groupSize)
      try c.encode(ignore, forKey: .ignore)
      try c.encode(scaleSearch, forKey: .scaleSearch)
      try c.encodeIfPresent(rotationBlock, forKey: .rotationBlock)
      if !schemeFor.isEmpty { try c.encode(schemeFor, forKey: .schemeFor) }
      switch target {
      case .bitsPerWeight(let b): try c.encode(b, forKey: .targetBpw)
      case .size(let s): try c.encode(s, forKey: .targetSize)
      case nil: break
      }
      if target != nil { try c.encode(candidates, forKey: .candidates) }
      try c.encodeIfPresent(statistics, forKey: .statistics)
      guard method != .rtn else { return }
      try c.encode(method, forKey: .method)
      try c.encode(dampening, forKey: .dampening)
      try c.encode(blockSize, forKey: .blockSize)
      try c.encode(actorder, forKey: .actorder)
      try c.encode(refit, forKey: .refit)
    }

    /// Every key but `scheme` may be left out.
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      // With a target the allocation chooses every scheme: `scheme` may be left out.
      let allocated = c.contains(.targetBpw) || c.contains(.targetSize)
      self.init(
        scheme: allocated
          ? try c.decodeIfPresent(QuantizationScheme.self, forKey: .scheme) ?? .w4a16
          : try c.decode(QuantizationScheme.self, forKey: .scheme),
        groupSize: try c.decodeIfPresent(Int.self, forKey: .groupSize) ?? Self.defaultGroupSize,
        ignore: try c.decodeIfPresent([String].self, forKey: .ignore) ?? Self.defaultIgnore,
        scaleSearch: try c.decodeIfPresent(ScaleSearch.self, forKey: .scaleSearch) ?? Self.defaultScaleSearch,
        method: try c.decodeIfPresent(QuantizationMethod.self, forKey: .method) ?? Self.defaultMethod,
        dampening: try c.decodeIfPresent(Double.self, forKey: .dampening) ?? Self.defaultDampening,
        blockSize: try c.decodeIfPresent(Int.self, forKey: .blockSize) ?? Self.defaultBlockSize,
        actorder: try c.decodeIfPresent(ErrorFeedback.Order.self, forKey: .actorder) ?? Self.defaultActorder,
        rotationBlock: try c.decodeIfPresent(Int.self, forKey: .rotationBlock),
        refit: try c.decodeIfPresent(Refit.Mode.self, forKey: .refit) ?? Self.defaultRefit,
        schemeFor: try c.decodeIfPresent([SchemeRule].self, forKey: .schemeFor) ?? [],
        candidates: try c.decodeIfPresent([SchemeChoice].self, forKey: .candidates) ?? Self.defaultCandidates,
        statistics: try c.decodeIfPresent(String.self, forKey: .statistics))
      let bpw = try c.decodeIfPresent(Double.self, forKey: .targetBpw)
      let size = try c.decodeIfPresent(Int.self, forKey: .targetSize)
      if bpw != nil && size != nil {
        throw DecodingError.dataCorruptedError(
          forKey: .targetSize, in: c, debugDescription: "give target_bpw or target_size, not both")
      }
      target = bpw.map(AllocationTarget.bitsPerWeight) ?? size.map(AllocationTarget.size)
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
    "scheme", "group_size", "scale_search", "ignore", "residual_rank", "residual_iterations", "method", "dampening",
    "block_size", "actorder", "rotation_block", "refit", "scheme_for", "target_bpw", "target_size", "candidates",
    "statistics",
  ]
  public static let overrideKeys = ["scale_search", "scheme", "group_size"]

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
    if quantize.isMixed {
      throw .invalidConfiguration(
        pass: QuantizePass.identifier,
        reason:
          "residual_rank cannot be combined with scheme_for or a target size yet: the low-rank correction is fitted to one scheme; remove one of them"
      )
    }
    if quantize.rotationBlock != nil {
      throw .invalidConfiguration(
        pass: QuantizePass.identifier,
        reason:
          "rotation_block cannot be combined with residual_rank: the low-rank correction would have to be rotated too; remove one of them"
      )
    }
    var configuration = LowRankResidualPass.Configuration(quantize: quantize, rank: residualRank)
    if let residualIterations { configuration.iterations = residualIterations }
    return try LowRankResidualPass(configuration: configuration)
  }
}

extension QuantizePass {
  public var recipeStage: (any RecipeStageConfiguration)? {
    QuantizeStageConfiguration(quantize: configuration)
  }

  public var wholeModelRequirement: String? {
    if configuration.target != nil {
      return "chooses each module's scheme from all the input weights to fit target_bpw / target_size"
    }
    return rotation == nil
      ? nil : "rotates the input of every linear module, one rotation recorded for the model in transform_config"
  }

  public var allTensorsRequirement: String? {
    rotation == nil
      ? nil
      : "rotates the input of every linear module not in 'ignore' (transform_config names no others): leave modules out with 'ignore', not targets or exclude"
  }
}
