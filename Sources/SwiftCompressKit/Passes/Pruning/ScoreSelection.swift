import CKernels
import CheckpointIO
import Dispatch
import Foundation

/// A tensor whose scores take part in a selection.
struct ScoreSource: @unchecked Sendable {
  let input: TensorInput
  let module: String
  let rows: Int
  let columns: Int
  /// Called after each pass over the tensor (drops its pages between passes).
  var release: () -> Void = {}
}

/// Exact selection of the `prune` lowest scores over one or more tensors, streaming.
enum ScoreSelection {
  /// For each source, the threshold (the score of the first weight kept), how many of
  /// its weights equal to the threshold are pruned (the earliest ones: sources in order,
  /// then row-major), and how many it loses in all. Nothing is pruned when `prune` is 0.
  ///
  /// Scores are non-negative floats, ordered like their bit patterns: a histogram of the
  /// top 16 bits finds the bin holding the prune-th smallest, a histogram of the low 16
  /// bits inside that bin finds its exact value, and a last count per source of the
  /// scores below and equal to it splits the ties in order.
  static func threshold(prune: Int, of sources: [ScoreSource], criterion: any PruningCriterion)
    -> [PrunePass.GlobalThreshold]
  {
    let nothing = PrunePass.GlobalThreshold(threshold: -1, tiesToPrune: 0, pruned: 0)
    guard prune > 0 else { return sources.map { _ in nothing } }
    var high = [UInt64](repeating: 0, count: 1 << 16)
    for source in sources { histogram(source, prefix: -1, criterion: criterion, into: &high) }
    // The prune-th smallest (1-based) is the first kept weight's... rank prune - 1 (0-based).
    let target = prune - 1
    let (prefix, belowPrefix) = locate(target, in: high)
    var low = [UInt64](repeating: 0, count: 1 << 16)
    for source in sources { histogram(source, prefix: Int32(prefix), criterion: criterion, into: &low) }
    let (suffix, belowSuffix) = locate(target - belowPrefix, in: low)
    let threshold = Float(bitPattern: UInt32(prefix) << 16 | UInt32(suffix))
    // Per source: scores below and equal to the threshold (for one source, the
    // histograms already say).
    let counts =
      sources.count == 1
      ? [(below: belowPrefix + belowSuffix, equal: Int(low[suffix]))]
      : sources.map { countBelowAndEqual($0, threshold: threshold, criterion: criterion) }
    let below = counts.reduce(0) { $0 + $1.below }
    var ties = prune - below
    return counts.map { count in
      let taken = min(ties, count.equal)
      ties -= taken
      return PrunePass.GlobalThreshold(threshold: threshold, tiesToPrune: taken, pruned: count.below + taken)
    }
  }

  /// The bin holding rank `rank` (0-based) and the count of everything in lower bins.
  private static func locate(_ rank: Int, in bins: [UInt64]) -> (bin: Int, below: Int) {
    var seen = 0
    for (bin, count) in bins.enumerated() {
      if seen + Int(count) > rank { return (bin, seen) }
      seen += Int(count)
    }
    return (bins.count - 1, seen)  // unreachable when rank < total
  }

  /// Rows in parallel over fixed blocks, each with its own counters, added in order.
  private static func histogram(
    _ source: ScoreSource, prefix: Int32, criterion: any PruningCriterion, into bins: inout [UInt64]
  ) {
    let blocks = min(source.rows, 8)
    guard blocks > 0 else { return }
    let rowsPerBlock = (source.rows + blocks - 1) / blocks
    var partial = [[UInt64]](repeating: [], count: blocks)
    partial.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: blocks) { block in
        var counts = [UInt64](repeating: 0, count: 1 << 16)
        let rows = (block * rowsPerBlock)..<min(source.rows, (block + 1) * rowsPerBlock)
        counts.withUnsafeMutableBufferPointer { c in
          forEachScoreRow(source, rows: rows, criterion: criterion) { _, scores in
            sck_score_histogram(scores.baseAddress, scores.count, prefix, c.baseAddress)
          }
        }
        out[block] = counts
      }
    }
    for counts in partial where !counts.isEmpty {
      for i in 0..<(1 << 16) { bins[i] &+= counts[i] }
    }
    source.release()
  }

  private static func countBelowAndEqual(_ source: ScoreSource, threshold: Float, criterion: any PruningCriterion)
    -> (below: Int, equal: Int)
  {
    let blocks = min(source.rows, 8)
    guard blocks > 0 else { return (0, 0) }
    let rowsPerBlock = (source.rows + blocks - 1) / blocks
    var partial = [(Int, Int)](repeating: (0, 0), count: blocks)
    partial.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: blocks) { block in
        var below: UInt64 = 0
        var equal: UInt64 = 0
        let rows = (block * rowsPerBlock)..<min(source.rows, (block + 1) * rowsPerBlock)
        forEachScoreRow(source, rows: rows, criterion: criterion) { _, scores in
          sck_count_below_equal(scores.baseAddress, scores.count, threshold, &below, &equal)
        }
        out[block] = (Int(below), Int(equal))
      }
    }
    source.release()
    return partial.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
  }

  /// Calls `body` with each row's scores, converting the stored values to Float32.
  static func forEachScoreRow(
    _ source: ScoreSource, rows: Range<Int>, criterion: any PruningCriterion,
    _ body: (Int, UnsafeBufferPointer<Float>) -> Void
  ) {
    let columns = source.columns
    let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
    let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
    defer {
      values.deallocate()
      scores.deallocate()
    }
    for row in rows {
      let rowValues = source.input.float32Row(row, columns: columns, scratch: values)
      criterion.scores(module: source.module, row: row, values: rowValues, into: scores)
      body(row, UnsafeBufferPointer(scores))
    }
  }
}

/// What pruning did to one tensor (or, summed, to the model), for the report.
public struct SparsityInfo: Codable, Sendable, Equatable {
  /// The fraction asked for (nil for structured pruning, which removes units).
  public var target: Double?
  /// The fraction of weights that are zero afterwards (pruned ones and those that were
  /// zero already).
  public var achieved: Double
  public var zeros: Int
  public var pruned: Int
  /// The N:M pattern, and whether every group of the output holds at most N non-zeros.
  public var pattern: String? = nil
  public var patternHolds: Bool? = nil
  /// Structured pruning: what a unit is; for a tensor, the coupled group it belongs to.
  public var unit: PrunedUnit? = nil
  public var unitGroup: String? = nil
  /// Structured pruning: units removed of the units there, each counted once: for a
  /// tensor, those of its coupled group (the same for every tensor of the group); in
  /// the totals, those of the model.
  public var unitsRemoved: Int? = nil
  public var unitsTotal: Int? = nil
  /// With key-value head groups: the attention (query) heads in the removed groups, of
  /// all there.
  public var attentionHeadsRemoved: Int? = nil
  public var attentionHeadsTotal: Int? = nil
  /// Structured pruning, totals only: the units per layer, in layer order.
  public var layers: [LayerUnits]? = nil
  /// Structured pruning: the tensor's shape afterwards.
  public var shapeAfter: [Int]? = nil

  enum CodingKeys: String, CodingKey {
    case target, achieved, zeros, pruned, pattern, unit, layers
    case patternHolds = "pattern_holds"
    case unitGroup = "unit_group"
    case unitsRemoved = "units_removed"
    case unitsTotal = "units_total"
    case attentionHeadsRemoved = "attention_heads_removed"
    case attentionHeadsTotal = "attention_heads_total"
    case shapeAfter = "shape_after"
  }

  public init(target: Double?, achieved: Double, zeros: Int, pruned: Int) {
    self.target = target
    self.achieved = achieved
    self.zeros = zeros
    self.pruned = pruned
  }

  /// The sum over tensors (name, parameters, info); nil when there are none. Structured
  /// units are counted once per coupled group, not once per tensor of it.
  static func total(_ parts: [(name: String, parameters: Int, info: SparsityInfo)]) -> SparsityInfo? {
    guard let first = parts.first?.info else { return nil }
    let parameters = parts.reduce(0) { $0 + $1.parameters }
    let zeros = parts.reduce(0) { $0 + $1.info.zeros }
    var total = SparsityInfo(
      target: first.target, achieved: parameters > 0 ? Double(zeros) / Double(parameters) : 0, zeros: zeros,
      pruned: parts.reduce(0) { $0 + $1.info.pruned })
    total.pattern = first.pattern
    if first.pattern != nil { total.patternHolds = parts.allSatisfy { $0.info.patternHolds == true } }
    if first.unitsTotal != nil { total.addUnits(of: parts.map { ($0.name, $0.info) }) }
    return total
  }
}
