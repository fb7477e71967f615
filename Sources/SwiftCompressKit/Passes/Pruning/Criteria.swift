import CheckpointIO
import Foundation

/// What decides which weights go: a score per weight, the lowest pruned first. An open
/// family: new criteria conform and join `PruningCriteria.all`.
///
/// Scores must be non-negative and finite (the selection kernels compare their bit
/// patterns), and depend only on the tensor, the row and the row's values, so every
/// pass over a tensor sees the same scores.
public protocol PruningCriterion: Sendable {
  /// The name used by `--method` and in reports.
  static var name: String { get }
  /// One line for the help text.
  static var summary: String { get }
  /// Writes the score of each value of row `row` of the weight of `module`.
  func scores(
    module: String, row: Int, values: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>)
}

/// |w|: the classic magnitude criterion.
public struct MagnitudeCriterion: PruningCriterion {
  public static let name = "magnitude"
  public static let summary = "|w|"
  public init() {}
  public func scores(
    module: String, row: Int, values: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>
  ) {
    for i in values.indices { scores[i] = abs(values[i]) }
  }
}

/// Wanda (Sun et al. 2023): |w_ij| x ||X_j||, the weight's magnitude times the L2 norm of
/// its input channel's activations over a calibration set (`CalibrationStatistics`).
public struct WandaCriterion: PruningCriterion {
  public static let name = "wanda"
  public static let summary = "|w_ij| x ||X_j|| from a calibration-statistics file"
  let norms: [String: [Float]]
  public init(norms: [String: [Float]]) {
    self.norms = norms
  }
  public func scores(
    module: String, row: Int, values: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>
  ) {
    guard let norm = norms[module], norm.count == values.count else {
      preconditionFailure("Wanda norms of \(module) were validated when the pass was prepared")
    }
    for i in values.indices { scores[i] = abs(values[i]) * norm[i] }
  }
}

/// A seeded uniform random score per weight: the baseline every other criterion is
/// judged against. The same seed, module and position always give the same score.
public struct RandomCriterion: PruningCriterion {
  public static let name = "random"
  public static let summary = "uniform random scores from --seed"
  let seed: UInt64
  public init(seed: UInt64) {
    self.seed = seed
  }
  public func scores(
    module: String, row: Int, values: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>
  ) {
    // SplitMix64 of (seed, module, position): independent of the order rows are visited.
    let state = seed ^ Self.fnv1a(module)
    let base = UInt64(row) &* UInt64(values.count)
    for i in values.indices {
      var z = state &+ (base &+ UInt64(i)) &* 0x9E37_79B9_7F4A_7C15
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      z ^= z >> 31
      scores[i] = Float(z >> 40) * 0x1p-24  // 24 random bits: exact in Float32
    }
  }

  static func fnv1a(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    return hash
  }
}

/// The criteria this build knows.
public enum PruningCriteria {
  public static let all: [any PruningCriterion.Type] = [
    MagnitudeCriterion.self, WandaCriterion.self, RandomCriterion.self,
  ]
  public static var names: [String] { all.map { $0.name } }
}
