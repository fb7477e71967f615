import CheckpointIO
import Foundation

/// Limits a finished run must meet; a failed gate makes the command exit 3 after the
/// output and report are written.
public struct QualityGates: Codable, Sendable, Equatable {
  /// Largest total relative Frobenius error.
  public var maxError: Double?
  /// Smallest total SQNR in dB.
  public var minSQNR: Double?
  /// Largest bits per weight over all tensors.
  public var maxBitsPerWeight: Double?
  /// Smallest compression ratio (bytes before / bytes after).
  public var minRatio: Double?

  public init(maxError: Double? = nil, minSQNR: Double? = nil, maxBitsPerWeight: Double? = nil, minRatio: Double? = nil)
  {
    self.maxError = maxError
    self.minSQNR = minSQNR
    self.maxBitsPerWeight = maxBitsPerWeight
    self.minRatio = minRatio
  }

  enum CodingKeys: String, CodingKey {
    case maxError = "max_error"
    case minSQNR = "min_sqnr"
    case maxBitsPerWeight = "max_bpw"
    case minRatio = "min_ratio"
  }

  public var isEmpty: Bool { maxError == nil && minSQNR == nil && maxBitsPerWeight == nil && minRatio == nil }

  /// These gates with every limit `other` sets replacing ours.
  public func overridden(by other: QualityGates) -> QualityGates {
    QualityGates(
      maxError: other.maxError ?? maxError, minSQNR: other.minSQNR ?? minSQNR,
      maxBitsPerWeight: other.maxBitsPerWeight ?? maxBitsPerWeight, minRatio: other.minRatio ?? minRatio)
  }

  /// Each gate set, checked against a run's totals. A gate on the error passes only
  /// when the error was measured.
  public func check(_ totals: Report.Totals) -> [GateResult] {
    var results: [GateResult] = []
    if let limit = maxError {
      let value = totals.metrics?.relativeFrobeniusError
      results.append(
        GateResult(gate: "max_error", limit: limit, value: value, passed: value.map { $0 <= limit } ?? false))
    }
    if let limit = minSQNR {
      let value = totals.metrics.map { $0.sqnrDB ?? .infinity }
      results.append(
        GateResult(gate: "min_sqnr", limit: limit, value: value, passed: value.map { $0 >= limit } ?? false))
    }
    if let limit = maxBitsPerWeight {
      let value = totals.bitsPerWeightAfter
      results.append(GateResult(gate: "max_bpw", limit: limit, value: value, passed: value <= limit))
    }
    if let limit = minRatio {
      let value = totals.compressionRatio
      results.append(GateResult(gate: "min_ratio", limit: limit, value: value, passed: value >= limit))
    }
    return results
  }

  /// Rejects limits that cannot be met or are not numbers.
  public func validate() throws(SwiftCompressError) {
    for (name, value) in [
      ("max_error", maxError), ("min_sqnr", minSQNR), ("max_bpw", maxBitsPerWeight), ("min_ratio", minRatio),
    ] {
      if let value, !value.isFinite {
        throw .invalidOption(option: "--" + name.replacingOccurrences(of: "_", with: "-"), reason: "must be a number")
      }
    }
    if let e = maxError, e < 0 { throw .invalidOption(option: "--max-error", reason: "must be at least 0") }
    if let b = maxBitsPerWeight, b <= 0 { throw .invalidOption(option: "--max-bpw", reason: "must be positive") }
    if let r = minRatio, r <= 0 { throw .invalidOption(option: "--min-ratio", reason: "must be positive") }
  }
}

/// The outcome of one quality gate.
public struct GateResult: Codable, Sendable, Equatable {
  public var gate: String
  public var limit: Double
  /// The measured value; nil when it was not measured (the gate then fails).
  public var value: Double?
  public var passed: Bool

  public init(gate: String, limit: Double, value: Double?, passed: Bool) {
    self.gate = gate
    self.limit = limit
    self.value = value
    self.passed = passed
  }

  /// "max_error 0.2: measured 0.25130261 (failed)": the limit as given, the value with at least 8
  /// significant digits and as many more as it takes to differ from the limit.
  public var summary: String {
    "\(gate) \(Self.given(limit)): measured \(Self.digits(value, against: limit)) (\(passed ? "passed" : "failed"))"
  }

  /// `limit` as a user writes it: "10" rather than "10.0", "0.9999999" in full.
  static func given(_ limit: Double) -> String {
    if limit == limit.rounded(), abs(limit) < 1e15 { return String(Int64(limit)) }
    return "\(limit)"
  }

  /// `value` with 8 significant digits, or more (up to 17) until it reads differently from `limit`.
  static func digits(_ value: Double?, against limit: Double) -> String {
    guard let value else { return "-" }
    guard value.isFinite else { return Format.metric(value) }
    for precision in 8...17 {
      let text = String(format: "%.\(precision)g", value)
      if value == limit || Double(text) != limit { return text }
    }
    return "\(value)"
  }
}
