import CheckpointIO
import Foundation

extension FactorizePass {
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

    public init(
      method: FactorizationMethod, rank: RankRule, ignore: [String] = ["lm_head"],
      oversampling: Int = FactorizePass.defaultOversampling,
      powerIterations: Int = FactorizePass.defaultPowerIterations, seed: UInt64 = 0, calibration: String? = nil
    ) {
      self.method = method
      self.rank = rank
      self.ignore = ignore
      self.oversampling = oversampling
      self.powerIterations = powerIterations
      self.seed = seed
      self.calibration = calibration
    }
  }
}
