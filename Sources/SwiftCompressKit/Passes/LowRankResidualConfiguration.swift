import CheckpointIO
import Foundation

extension LowRankResidualPass {
  public struct Configuration: Codable, Sendable, Equatable {
    public var quantize: QuantizePass.Configuration
    /// Rank k of the correction.
    public var rank: Int
    /// Alternations of quantize and low-rank fit.
    public var iterations: Int

    public init(
      quantize: QuantizePass.Configuration, rank: Int, iterations: Int = LowRankResidualPass.defaultIterations
    ) {
      self.quantize = quantize
      self.rank = rank
      self.iterations = iterations
    }
  }
}

extension LowRankResidualPass {
  /// A recipe's quantize stage with `residual_rank` and `residual_iterations`.
  public var recipeStage: (any RecipeStageConfiguration)? {
    QuantizeStageConfiguration(
      quantize: configuration.quantize, residualRank: configuration.rank, residualIterations: configuration.iterations)
  }
}
