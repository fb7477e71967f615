import CheckpointIO
import Foundation

extension FactorizePass {
  /// The factorize options, as the command line, a recipe stage (snake_case keys, the
  /// rank rule's key beside the others) and the pass registry's JSON give them.
  public struct Configuration: Codable, Sendable, Equatable {
    public var method: FactorizationMethod
    public var rank: RankRule
    /// Modules left dense (exact names or re:<regex>); default lm_head.
    public var ignore: [String]
    /// rsvd: oversampling, power iterations and seed (defaults ``FactorizePass/defaultOversampling``
    /// and ``FactorizePass/defaultPowerIterations``).
    public var oversampling: Int
    public var powerIterations: Int
    public var seed: UInt64
    /// Activation-aware: per-input-channel activation norms (the pruning calibration file).
    public var calibration: String?

    // The value of each option left out (and FactorizePass.defaultOversampling,
    // FactorizePass.defaultPowerIterations).
    public static let defaultMethod = FactorizationMethod.svd
    public static let defaultIgnore = ["lm_head"]
    public static let defaultSeed: UInt64 = 0

    public init(
      method: FactorizationMethod = defaultMethod, rank: RankRule, ignore: [String] = defaultIgnore,
      oversampling: Int = FactorizePass.defaultOversampling,
      powerIterations: Int = FactorizePass.defaultPowerIterations, seed: UInt64 = defaultSeed,
      calibration: String? = nil
    ) {
      self.method = method
      self.rank = rank
      self.ignore = ignore
      self.oversampling = oversampling
      self.powerIterations = powerIterations
      self.seed = seed
      self.calibration = calibration
    }

    enum CodingKeys: String, CodingKey {
      case method, rank, ignore, oversampling, powerIterations, seed, calibration
    }

    /// Every key but the rank rule may be left out.
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      let rank = try c.decode(RankRule.self, forKey: .rank)
      self.init(
        method: try c.decodeIfPresent(FactorizationMethod.self, forKey: .method) ?? Self.defaultMethod, rank: rank,
        ignore: try c.decodeIfPresent([String].self, forKey: .ignore) ?? Self.defaultIgnore,
        oversampling: try c.decodeIfPresent(Int.self, forKey: .oversampling) ?? FactorizePass.defaultOversampling,
        powerIterations: try c.decodeIfPresent(Int.self, forKey: .powerIterations)
          ?? FactorizePass.defaultPowerIterations,
        seed: try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? Self.defaultSeed,
        calibration: try c.decodeIfPresent(String.self, forKey: .calibration))
    }
  }
}

extension FactorizePass.Configuration: RecipeStageConfiguration {
  public static let stageKind = StageKind.factorize
  public static let optionKeys = [
    "method", "rank", "energy", "max_error", "ratio", "budget", "model_ratio", "calibration", "oversampling",
    "power_iterations", "seed", "ignore",
  ]
  public static let overrideKeys = [
    "method", "rank", "energy", "max_error", "ratio", "oversampling", "power_iterations", "seed",
  ]

  public func pass() throws(SwiftCompressError) -> any CompressionPass { try FactorizePass(configuration: self) }
}

extension FactorizePass {
  public var recipeStage: (any RecipeStageConfiguration)? { configuration }

  public var wholeModelRequirement: String? {
    switch configuration.rank {
    case .energy, .maxError: "chooses ranks from singular values"
    case .budget, .modelRatio: "shares one rank budget"
    case .rank, .ratio: nil
    }
  }

  /// The ranks recorded in config.json cover both variants' factorized modules.
  public func merged(with variant: FactorizePass) -> FactorizePass {
    var merged = self
    merged.factorized.merge(variant.factorized) { old, _ in old }
    return merged
  }
}
