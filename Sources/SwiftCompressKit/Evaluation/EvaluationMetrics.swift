import Foundation

/// The arithmetic of `evaluate`, in Double.
public enum EvaluationMath {
  /// log softmax of `logits` in Double: (x - max) - log(sum exp(x - max)), as llama-perplexity does.
  public static func logSoftmax(_ logits: UnsafeBufferPointer<Float>, into result: inout [Double]) {
    let count = logits.count
    if result.count != count { result = [Double](repeating: 0, count: count) }
    guard count > 0 else { return }
    var maximum = -Double.infinity
    for x in logits { maximum = max(maximum, Double(x)) }
    var sum = 0.0
    for x in logits { sum += exp(Double(x) - maximum) }
    let logSum = log(sum)
    for i in 0..<count { result[i] = (Double(logits[i]) - maximum) - logSum }
  }

  /// log softmax of `logits`.
  public static func logSoftmax(_ logits: [Float]) -> [Double] {
    var result: [Double] = []
    logits.withUnsafeBufferPointer { logSoftmax($0, into: &result) }
    return result
  }

  /// KL(P || Q) = sum_i p_i (log p_i - log q_i) of two log-probability vectors; terms with
  /// p_i = 0 are 0. Identical inputs give exactly 0.
  public static func klDivergence(_ logP: [Double], _ logQ: [Double]) -> Double {
    var sum = 0.0
    for i in 0..<logP.count {
      let p = exp(logP[i])
      if p > 0 { sum += p * (logP[i] - logQ[i]) }
    }
    return sum
  }

  /// The first index of the largest value.
  public static func argmax(_ values: [Double]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
  }

  /// The `fraction` quantile of sorted `values`, linearly interpolated between the closest ranks
  /// (numpy's default, and llama-perplexity's).
  public static func percentile(sorted values: [Double], _ fraction: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    if fraction <= 0 { return values[0] }
    if fraction >= 1 { return values[values.count - 1] }
    let position = fraction * Double(values.count - 1)
    let low = Int(position.rounded(.down))
    let high = min(low + 1, values.count - 1)
    let t = position - Double(low)
    return (1 - t) * values[low] + t * values[high]
  }

  /// 1-based ranks of `values`, ties given the average of the ranks they span.
  public static func ranks(_ values: [Double]) -> [Double] {
    let order = values.indices.sorted { values[$0] < values[$1] || (values[$0] == values[$1] && $0 < $1) }
    var ranks = [Double](repeating: 0, count: values.count)
    var start = 0
    while start < order.count {
      var end = start
      while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
      let rank = Double(start + end) / 2 + 1
      for k in start...end { ranks[order[k]] = rank }
      start = end + 1
    }
    return ranks
  }

  /// Pearson's correlation; nil when either side is constant or there are fewer than 2 values.
  public static func pearson(_ a: [Double], _ b: [Double]) -> Double? {
    let n = Double(a.count)
    guard a.count == b.count, a.count >= 2 else { return nil }
    let meanA = a.reduce(0, +) / n
    let meanB = b.reduce(0, +) / n
    var (sab, saa, sbb) = (0.0, 0.0, 0.0)
    for i in a.indices {
      let (x, y) = (a[i] - meanA, b[i] - meanB)
      sab += x * y
      saa += x * x
      sbb += y * y
    }
    guard saa > 0, sbb > 0 else { return nil }
    return sab / (saa * sbb).squareRoot()
  }

  /// Spearman's rank correlation: Pearson's correlation of the average ranks (ties handled as
  /// scipy.stats.spearmanr does).
  public static func spearman(_ a: [Double], _ b: [Double]) -> Double? {
    pearson(ranks(a), ranks(b))
  }

  /// Cosine similarity in Double; 1 when both are zero vectors, 0 when only one is. A vector with
  /// itself gives exactly 1 (sqrt of a rounded square is exact).
  public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var (dot, aa, bb) = (0.0, 0.0, 0.0)
    for i in 0..<min(a.count, b.count) {
      let (x, y) = (Double(a[i]), Double(b[i]))
      dot += x * y
      aa += x * x
      bb += y * y
    }
    if aa == 0 && bb == 0 { return 1 }
    if aa == 0 || bb == 0 { return 0 }
    return dot / (aa * bb).squareRoot()
  }

  /// The upper triangle (i < j, row by row) of the pairwise cosine similarities of `vectors`.
  public static func pairwiseCosines(_ vectors: [[Float]]) -> [Double] {
    var result: [Double] = []
    for i in 0..<vectors.count {
      for j in (i + 1)..<max(i + 1, vectors.count) { result.append(cosine(vectors[i], vectors[j])) }
    }
    return result
  }
}

/// A mean with llama-perplexity's uncertainty: sqrt((mean(x^2) - mean(x)^2) / (n - 1)).
public struct MeanAndUncertainty: Codable, Sendable, Equatable {
  public var mean: Double
  public var uncertainty: Double?

  public init(_ values: [Double]) {
    let n = Double(values.count)
    let mean = values.reduce(0, +) / n
    let square = values.reduce(0) { $0 + $1 * $1 } / n
    self.mean = mean
    uncertainty = values.count > 1 ? max(0, square - mean * mean).squareRoot() / (n - 1).squareRoot() : nil
  }

  public init(mean: Double, uncertainty: Double?) {
    self.mean = mean
    self.uncertainty = uncertainty
  }
}

/// A distribution's summary: llama-perplexity's KLD percentiles.
public struct DistributionSummary: Codable, Sendable, Equatable {
  public var mean: Double
  public var uncertainty: Double?
  public var maximum: Double
  public var p99_9: Double
  public var p99: Double
  public var p95: Double
  public var p90: Double
  public var median: Double
  public var p10: Double
  public var p5: Double
  public var p1: Double
  public var p0_1: Double
  public var minimum: Double

  public init(_ values: [Double]) {
    let sorted = values.sorted()
    let m = MeanAndUncertainty(values)
    mean = m.mean
    uncertainty = m.uncertainty
    func q(_ f: Double) -> Double { EvaluationMath.percentile(sorted: sorted, f) }
    maximum = sorted.last ?? .nan
    p99_9 = q(0.999)
    p99 = q(0.99)
    p95 = q(0.95)
    p90 = q(0.90)
    median = q(0.5)
    p10 = q(0.10)
    p5 = q(0.05)
    p1 = q(0.01)
    p0_1 = q(0.001)
    minimum = sorted.first ?? .nan
  }

  enum CodingKeys: String, CodingKey {
    case mean, uncertainty, median
    case maximum = "max"
    case minimum = "min"
    case p99_9 = "p99.9"
    case p99 = "p99"
    case p95 = "p95"
    case p90 = "p90"
    case p10 = "p10"
    case p5 = "p5"
    case p1 = "p1"
    case p0_1 = "p0.1"
  }

  /// (label, value) rows as llama-perplexity prints them.
  public var rows: [(String, Double)] {
    [
      ("Maximum", maximum), ("99.9%", p99_9), ("99.0%", p99), ("95.0%", p95), ("90.0%", p90), ("Median", median),
      ("10.0%", p10), (" 5.0%", p5), (" 1.0%", p1), (" 0.1%", p0_1), ("Minimum", minimum),
    ]
  }
}

/// The running sums of a decoder comparison, position by position.
public struct DecoderAccumulator: Sendable {
  /// -log p_ref(next token) at each scored position.
  public var referenceNLL: [Double] = []
  /// -log p_cand(next token).
  public var candidateNLL: [Double] = []
  /// KL(P_ref || P_cand).
  public var kld: [Double] = []
  /// Positions where both argmax agree.
  public var sameTop = 0
  /// p_cand(next token) - p_ref(next token) (llama-perplexity's Δp).
  public var deltaP: [Double] = []

  public init() {}

  /// Adds one scored position: both models' log-probabilities and the next token.
  public mutating func add(reference: [Double], candidate: [Double], next: Int) {
    referenceNLL.append(-reference[next])
    candidateNLL.append(-candidate[next])
    kld.append(EvaluationMath.klDivergence(reference, candidate))
    if EvaluationMath.argmax(reference) == EvaluationMath.argmax(candidate) { sameTop += 1 }
    deltaP.append(exp(candidate[next]) - exp(reference[next]))
  }

  public var positions: Int { kld.count }

  public func figures() -> DecoderFigures {
    let n = Double(positions)
    let top = positions > 0 ? Double(sameTop) / n : .nan
    func perplexity(_ nll: [Double]) -> MeanAndUncertainty {
      let m = MeanAndUncertainty(nll)
      let ppl = exp(m.mean)
      return MeanAndUncertainty(mean: ppl, uncertainty: m.uncertainty.map { ppl * $0 })
    }
    let logRatio = zip(candidateNLL, referenceNLL).map { $0 - $1 }
    return DecoderFigures(
      positions: positions, referencePerplexity: perplexity(referenceNLL),
      candidatePerplexity: perplexity(candidateNLL), meanLogPerplexityRatio: MeanAndUncertainty(logRatio),
      kld: DistributionSummary(kld), deltaP: DistributionSummary(deltaP),
      sameTop: MeanAndUncertainty(
        mean: top, uncertainty: positions > 1 ? (top * (1 - top) / (n - 1)).squareRoot() : nil))
  }
}

/// What `evaluate` reports for two decoders.
public struct DecoderFigures: Codable, Sendable, Equatable {
  /// Scored positions: every position followed by a token in its sample.
  public var positions: Int
  /// exp(mean NLL) of the reference, ± PPL x the NLL mean's uncertainty.
  public var referencePerplexity: MeanAndUncertainty
  public var candidatePerplexity: MeanAndUncertainty
  /// Mean ln(PPL(cand)/PPL(ref)) per position.
  public var meanLogPerplexityRatio: MeanAndUncertainty
  /// KL(P_ref || P_cand) per position.
  public var kld: DistributionSummary
  /// p_cand(next) - p_ref(next) per position.
  public var deltaP: DistributionSummary
  /// Share of positions where both argmax agree ("Same top p"), ± sqrt(p(1-p)/(n-1)).
  public var sameTop: MeanAndUncertainty

  enum CodingKeys: String, CodingKey {
    case positions, kld
    case referencePerplexity = "reference_perplexity"
    case candidatePerplexity = "candidate_perplexity"
    case meanLogPerplexityRatio = "mean_ln_ppl_ratio"
    case deltaP = "delta_p"
    case sameTop = "same_top_p"
  }
}

/// What `evaluate` reports for two encoders.
public struct EncoderFigures: Codable, Sendable, Equatable {
  public var samples: Int
  /// Cosine of each sample's pooled embeddings (reference vs candidate).
  public var cosineMean: Double
  public var cosineMin: Double
  /// Spearman's rank correlation of the pairwise cosine similarities (upper triangle) of the
  /// reference's embeddings and the candidate's; nil with fewer than 3 samples or constant sides.
  public var spearman: Double?

  enum CodingKeys: String, CodingKey {
    case samples, spearman
    case cosineMean = "cosine_mean"
    case cosineMin = "cosine_min"
  }

  public init(reference: [[Float]], candidate: [[Float]]) {
    let cosines = zip(reference, candidate).map { EvaluationMath.cosine($0, $1) }
    samples = cosines.count
    cosineMean = cosines.reduce(0, +) / Double(max(1, cosines.count))
    cosineMin = cosines.min() ?? .nan
    spearman =
      reference.count >= 3
      ? EvaluationMath.spearman(EvaluationMath.pairwiseCosines(reference), EvaluationMath.pairwiseCosines(candidate))
      : nil
  }
}
