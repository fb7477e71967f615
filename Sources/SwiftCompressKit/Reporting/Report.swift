import CheckpointIO
import Foundation

/// The report of one run, written as `swiftcompress-report.json` (schema documented
/// in docs/report-schema.md) and `swiftcompress-report.md`.
public struct Report: Codable, Sendable, Equatable {
  public static let schemaName = "swiftcompress-report"
  public static let currentSchemaVersion = 1
  public static let jsonFileName = "swiftcompress-report.json"
  public static let markdownFileName = "swiftcompress-report.md"

  public var schema = Report.schemaName
  public var schemaVersion = Report.currentSchemaVersion
  public var tool: Tool
  public var command: String
  public var input: Input
  public var output: Output
  public var pass: PassInfo
  public var selection: Selection
  public var tensors: [TensorEntry]
  public var totals: Totals
  public var timing: Timing
  /// Things the user should know about this run (`--strict` stops on them).
  public var warnings: [String] = []
  /// Facts about the output worth knowing that are not problems (how it loads).
  public var notes: [String] = []
  /// The quality gates checked against the totals (empty when none was set).
  public var gates: [GateResult] = []

  /// Whether every gate passed.
  public var gatesPassed: Bool { gates.allSatisfy(\.passed) }

  public struct Tool: Codable, Sendable, Equatable {
    public var name = "swiftcompress"
    public var version = SwiftCompressVersion.current
  }

  public struct Input: Codable, Sendable, Equatable {
    public var path: String
    public var layout: String
    public var files: [String]
    public var tensorCount: Int
    public var bytes: Int
    enum CodingKeys: String, CodingKey {
      case path, layout, files
      case tensorCount = "tensor_count"
      case bytes
    }
  }

  public struct Output: Codable, Sendable, Equatable {
    public var path: String
    public var files: [String]
    public var index: String?
    public var maxShardSize: Int
    public var copiedFiles: [String]
    /// Non-weight files a pass rewrote (config.json).
    public var editedFiles: [String]
    public var ignoredFiles: [String]
    enum CodingKeys: String, CodingKey {
      case path, files, index
      case maxShardSize = "max_shard_size"
      case copiedFiles = "copied_files"
      case editedFiles = "edited_files"
      case ignoredFiles = "ignored_files"
    }
  }

  public struct PassInfo: Codable, Sendable, Equatable {
    public var identifier: String
    /// The pass configuration as a JSON object string.
    public var configuration: String
  }

  public struct Selection: Codable, Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]
  }

  public struct OutputTensor: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var bytes: Int
    public var file: String
  }

  public struct TensorEntry: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var parameters: Int
    /// "transformed" or "kept".
    public var action: String
    /// Why a tensor was kept (or a note on how it was transformed).
    public var reason: String?
    public var outputs: [OutputTensor]
    public var bytesBefore: Int
    public var bytesAfter: Int
    public var bitsPerWeightBefore: Double
    public var bitsPerWeightAfter: Double
    /// nil for kept tensors and transforms whose error is not element-wise comparable.
    public var metrics: ErrorMetrics?
    /// With a scale search: what plain round-to-nearest would have cost.
    public var roundToNearestMetrics: ErrorMetrics? = nil
    /// Pruning only: target and achieved sparsity, the N:M check, units removed.
    public var sparsity: SparsityInfo? = nil
    /// factorize with lq: the truncated SVD's relative error at the same rank.
    public var svdOptimumError: Double? = nil

    public var isKept: Bool { action == "kept" }

    enum CodingKeys: String, CodingKey {
      case name, dtype, shape, parameters, action, reason, outputs
      case bytesBefore = "bytes_before"
      case bytesAfter = "bytes_after"
      case bitsPerWeightBefore = "bits_per_weight_before"
      case bitsPerWeightAfter = "bits_per_weight_after"
      case metrics
      case roundToNearestMetrics = "round_to_nearest_metrics"
      case sparsity
      case svdOptimumError = "svd_optimum_relative_error"
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(roundToNearestMetrics, forKey: .roundToNearestMetrics)
      try c.encodeIfPresent(sparsity, forKey: .sparsity)
      try c.encodeIfPresent(svdOptimumError, forKey: .svdOptimumError)
      try c.encode(name, forKey: .name)
      try c.encode(dtype, forKey: .dtype)
      try c.encode(shape, forKey: .shape)
      try c.encode(parameters, forKey: .parameters)
      try c.encode(action, forKey: .action)
      try c.encode(reason, forKey: .reason)
      try c.encode(outputs, forKey: .outputs)
      try c.encode(bytesBefore, forKey: .bytesBefore)
      try c.encode(bytesAfter, forKey: .bytesAfter)
      try c.encode(bitsPerWeightBefore, forKey: .bitsPerWeightBefore)
      try c.encode(bitsPerWeightAfter, forKey: .bitsPerWeightAfter)
      try c.encode(metrics, forKey: .metrics)
    }
  }

  public struct Totals: Codable, Sendable, Equatable {
    public var tensors: Int
    public var transformed: Int
    public var kept: Int
    public var parameters: Int
    public var bytesBefore: Int
    public var bytesAfter: Int
    public var bitsPerWeightBefore: Double
    public var bitsPerWeightAfter: Double
    /// bytes_before / bytes_after.
    public var compressionRatio: Double
    /// Aggregated over the transformed tensors whose error was measured: the
    /// error energy summed over tensors, relative to their summed energy.
    public var metrics: ErrorMetrics?
    /// With a scale search: the same aggregate for plain round-to-nearest.
    public var roundToNearestMetrics: ErrorMetrics? = nil
    /// Pruning only: over the pruned tensors.
    public var sparsity: SparsityInfo? = nil

    enum CodingKeys: String, CodingKey {
      case sparsity
      case tensors, transformed, kept, parameters
      case bytesBefore = "bytes_before"
      case bytesAfter = "bytes_after"
      case bitsPerWeightBefore = "bits_per_weight_before"
      case bitsPerWeightAfter = "bits_per_weight_after"
      case compressionRatio = "compression_ratio"
      case metrics
      case roundToNearestMetrics = "round_to_nearest_metrics"
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(tensors, forKey: .tensors)
      try c.encode(transformed, forKey: .transformed)
      try c.encode(kept, forKey: .kept)
      try c.encode(parameters, forKey: .parameters)
      try c.encode(bytesBefore, forKey: .bytesBefore)
      try c.encode(bytesAfter, forKey: .bytesAfter)
      try c.encode(bitsPerWeightBefore, forKey: .bitsPerWeightBefore)
      try c.encode(bitsPerWeightAfter, forKey: .bitsPerWeightAfter)
      try c.encode(compressionRatio, forKey: .compressionRatio)
      try c.encode(metrics, forKey: .metrics)
      try c.encode(roundToNearestMetrics, forKey: .roundToNearestMetrics)
      try c.encodeIfPresent(sparsity, forKey: .sparsity)
    }
  }

  public struct Timing: Codable, Sendable, Equatable {
    /// From the start of the run to the last tensor transformed (the last outputs are
    /// written while the report is rendered, so it cannot count them).
    public var seconds: Double
    /// Input tensor bytes processed per second.
    public var bytesPerSecond: Double
    public var peakRSSBytes: Int
    enum CodingKeys: String, CodingKey {
      case seconds
      case bytesPerSecond = "bytes_per_second"
      case peakRSSBytes = "peak_rss_bytes"
    }
  }

  enum CodingKeys: String, CodingKey {
    case schema
    case schemaVersion = "schema_version"
    case tool, command, input, output, pass, selection, tensors, totals, timing, warnings, notes, gates
  }

  /// The report as pretty, key-sorted JSON (non-finite numbers as strings).
  public func jsonText() -> String { Format.json(self) }
}

extension Report {
  /// Structured pruning's units per layer as table cells: the header, then one row per
  /// layer (layer index or "-", name, removed, of, [attention heads removed, of],
  /// fraction) and the model's row ("all") last.
  static func unitTable(_ sparsity: SparsityInfo) -> (header: [String], rows: [[String]])? {
    guard let layers = sparsity.layers, !layers.isEmpty, let model = sparsity.unitCount else { return nil }
    let heads = model.headsTotal != nil
    let header =
      ["layer", "name", "\(sparsity.unit?.plural ?? "units") pruned", "of"]
      + (heads ? ["attention heads pruned", "of"] : []) + ["fraction"]
    func row(_ label: String, _ name: String, _ c: UnitCount) -> [String] {
      let fraction = c.total > 0 ? Format.fixed(Double(c.removed) / Double(c.total) * 100, 1) + "%" : "-"
      return [label, name, "\(c.removed)", "\(c.total)"]
        + (heads ? ["\(c.headsRemoved ?? 0)", "\(c.headsTotal ?? 0)"] : []) + [fraction]
    }
    let rows = layers.map { row($0.layer.map(String.init) ?? "-", $0.name, $0.count) } + [row("all", "", model)]
    return (header, rows)
  }

  /// Assembles the report of a finished run.
  init(
    command: String, checkpoint: Checkpoint, plan: CompressionPlan, options: CompressionOptions,
    pass: any CompressionPass, tensors: [TensorEntry], editedFiles: [String], totalMetrics: ErrorMetrics?,
    timing: Timing
  ) {
    self.init(
      tool: Tool(), command: command,
      input: Input(
        path: options.namedInput ?? options.input, layout: checkpoint.layout.rawValue,
        files: checkpoint.files.map { ($0.path as NSString).lastPathComponent }, tensorCount: checkpoint.tensors.count,
        bytes: checkpoint.tensorByteCount),
      output: Output(
        path: options.output, files: plan.layout.shards.map(\.fileName), index: plan.layout.indexFileName,
        maxShardSize: options.maxShardSize,
        copiedFiles: checkpoint.auxiliaryFiles.filter { !editedFiles.contains($0) && !plan.droppedFiles.contains($0) },
        editedFiles: editedFiles, ignoredFiles: checkpoint.ignoredWeightFiles),
      pass: PassInfo(identifier: type(of: pass).identifier, configuration: pass.configurationJSON),
      selection: Selection(include: options.selection.include, exclude: options.selection.exclude),
      tensors: tensors,
      totals: Totals(tensors: tensors, metrics: totalMetrics),
      timing: timing)
  }
}

extension Report {
  /// Fills the tensors, totals and gates from `records` (any order; input order is used).
  mutating func complete(with records: [TensorRecord], gates: QualityGates) {
    let ordered = records.sorted { $0.index < $1.index }
    tensors = ordered.compactMap(\.entry)
    var total = ErrorAccumulator()
    var baselineTotal: ErrorAccumulator?
    var measuredAny = false
    var unmeasured = false  // a transform whose error is not comparable element-wise
    for record in ordered {
      if record.measurement == .measured, let error = record.error {
        total.merge(error)
        measuredAny = true
      }
      if record.measurement == .unmeasured { unmeasured = true }
      if let baseline = record.baseline {
        baselineTotal = baselineTotal ?? ErrorAccumulator()
        baselineTotal?.merge(baseline)
      }
    }
    let metrics: ErrorMetrics? =
      if measuredAny { total.metrics } else if tensors.contains(where: { !$0.isKept }) && !unmeasured { .exact } else {
        nil
      }
    totals = Totals(tensors: tensors, metrics: metrics)
    totals.roundToNearestMetrics = baselineTotal?.metrics
    totals.sparsity = SparsityInfo.total(
      tensors.compactMap { entry in entry.sparsity.map { (entry.name, entry.parameters, $0) } })
    self.gates = gates.check(totals)
  }
}

extension QualityGates {
  /// The gates that produced `results` (their limits).
  init(results: [GateResult]) {
    self.init()
    for result in results {
      switch result.gate {
      case "max_error": maxError = result.limit
      case "min_sqnr": minSQNR = result.limit
      case "max_bpw": maxBitsPerWeight = result.limit
      case "min_ratio": minRatio = result.limit
      default: break
      }
    }
  }
}

extension Report {
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    schema = try c.decode(String.self, forKey: .schema)
    schemaVersion = try c.decode(Int.self, forKey: .schemaVersion)
    tool = try c.decode(Tool.self, forKey: .tool)
    command = try c.decode(String.self, forKey: .command)
    input = try c.decode(Input.self, forKey: .input)
    output = try c.decode(Output.self, forKey: .output)
    pass = try c.decode(PassInfo.self, forKey: .pass)
    selection = try c.decode(Selection.self, forKey: .selection)
    tensors = try c.decode([TensorEntry].self, forKey: .tensors)
    totals = try c.decode(Totals.self, forKey: .totals)
    timing = try c.decode(Timing.self, forKey: .timing)
    warnings = try c.decodeIfPresent([String].self, forKey: .warnings) ?? []
    notes = try c.decodeIfPresent([String].self, forKey: .notes) ?? []
    gates = try c.decodeIfPresent([GateResult].self, forKey: .gates) ?? []
  }
}

extension Report.Totals {
  /// The sums over `tensors`.
  init(tensors: [Report.TensorEntry], metrics: ErrorMetrics?) {
    let parameters = tensors.reduce(0) { $0 + $1.parameters }
    let before = tensors.reduce(0) { $0 + $1.bytesBefore }
    let after = tensors.reduce(0) { $0 + $1.bytesAfter }
    let transformed = tensors.filter { !$0.isKept }.count
    self.init(
      tensors: tensors.count, transformed: transformed, kept: tensors.count - transformed, parameters: parameters,
      bytesBefore: before, bytesAfter: after, bitsPerWeightBefore: Compressor.bitsPerWeight(before, parameters),
      bitsPerWeightAfter: Compressor.bitsPerWeight(after, parameters),
      compressionRatio: after > 0 ? Double(before) / Double(after) : 0, metrics: metrics)
  }
}

/// What `--dry-run` prints: the plan of a run, nothing written.
public struct PlanReport: Codable, Sendable, Equatable {
  public var schema = "swiftcompress-plan"
  public var command: String
  public var input: String
  public var output: String
  /// The weight files the run would write.
  public var files: [String]
  /// Per input tensor: action, outputs with dtypes, shapes and bytes; no metrics.
  public var tensors: [Report.TensorEntry]
  public var totals: Report.Totals
  /// The size gates (max_bpw, min_ratio) checked against the plan.
  public var gates: [GateResult]
  public var warnings: [String]
  public var notes: [String] = []

  public func jsonText() -> String { Format.json(self) }
}

/// The tool's version, recorded in reports and printed by `--version`.
public enum SwiftCompressVersion {
  public static let current = "0.1.0"
}

/// Number formatting shared by reports and tables.
public enum Format {
  /// `n` with its noun, singular for exactly one: "1 tensor", "0 tensors", "2 weight files".
  public static func count(_ n: Int, _ singular: String, plural: String? = nil) -> String {
    "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
  }

  /// "sparsity 50.0% (target 50%), 196608 weights pruned; 2:4 holds in every group";
  /// structured: "sparsity 25.0%, 73728 weights pruned; 192 of 768 MLP neurons pruned,
  /// 96 of 384 in each of 2 layers" (the last part when every layer lost as many).
  public static func sparsitySummary(_ s: SparsityInfo) -> String {
    var text = "sparsity \(fixed(s.achieved * 100, 1))%"
    if let target = s.target { text += " (target \(String(format: "%g", target * 100))%)" }
    text += ", \(count(s.pruned, "weight")) pruned"
    if let count = s.unitCount {
      text += "; \(units(count, s.unit)) pruned"
      if let layers = s.layers, layers.count > 1, layers.allSatisfy({ $0.layer != nil && $0.count == layers[0].count })
      {
        text += ", \(layers[0].unitsRemoved) of \(layers[0].unitsTotal) in each of \(layers.count) layers"
      }
    }
    if let pattern = s.pattern {
      text += s.patternHolds == true ? "; \(pattern) holds in every group" : "; \(pattern) does NOT hold"
    }
    return text
  }

  /// "96 of 384 MLP neurons", "1 of 2 key-value head groups (2 of 4 attention heads)";
  /// "units" when the unit is not known.
  public static func units(_ count: UnitCount, _ unit: PrunedUnit?) -> String {
    var text = "\(count.removed) of \(count.total) \(unit?.plural ?? "units")"
    if let removed = count.headsRemoved, let total = count.headsTotal {
      text += " (\(removed) of \(total) attention heads)"
    }
    return text
  }

  /// `value` as pretty, key-sorted JSON with a final newline; non-finite numbers as
  /// the strings "inf", "-inf", "nan". Used for every JSON this tool prints or writes.
  public static func json<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    guard let data = try? encoder.encode(value) else { return "{}\n" }
    return String(decoding: data, as: UTF8.self) + "\n"
  }

  /// `text` with its control characters (but those in `keeping`) written as `\uXXXX`:
  /// tensor names come from the input and may hold NUL or terminal escape sequences.
  /// Inside a JSON string this is the same character's escape.
  public static func visible(_ text: String, keeping: Set<Unicode.Scalar> = ["\n", "\t"]) -> String {
    func isControl(_ scalar: Unicode.Scalar) -> Bool {
      scalar.properties.generalCategory == .control && !keeping.contains(scalar)
    }
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    var result = ""
    for scalar in text.unicodeScalars {
      if isControl(scalar) {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
      } else {
        result.unicodeScalars.append(scalar)
      }
    }
    return result
  }

  /// `text` safe inside a Markdown table cell: every control character as `\uXXXX`,
  /// `|` and backticks escaped.
  public static func markdownCell(_ text: String) -> String {
    visible(text, keeping: []).replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "`", with: "\\`")
  }

  /// Decodes JSON this tool wrote with `json(_:)` (non-finite numbers as strings).
  public static func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return try decoder.decode(type, from: data)
  }

  /// `value` as compact, key-sorted JSON.
  public static func compactJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "null" }
    return String(decoding: data, as: UTF8.self)
  }

  /// Bytes with a binary unit: "512 B", "1.50 MiB".
  public static func bytes(_ count: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return unit == 0 ? "\(count) B" : "\(fixed(value, 2)) \(units[unit])"
  }

  /// `value` with `digits` decimals.
  public static func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    return String(format: "%.\(digits)f", value)
  }

  /// A metric in 4 significant digits, or "-" when absent.
  public static func metric(_ value: Double?) -> String {
    guard let value else { return "-" }
    guard value.isFinite else { return fixed(value, 0) }
    return String(format: "%.4g", value)
  }

  /// Cosine similarity with enough digits to see how close to 1 it is.
  public static func cosine(_ value: Double?) -> String {
    guard let value else { return "-" }
    return fixed(value, 6)
  }

  /// SQNR in dB, "inf" when the error is zero, "-" without metrics.
  public static func sqnr(_ metrics: ErrorMetrics?) -> String {
    guard let metrics else { return "-" }
    guard let sqnr = metrics.sqnrDB else { return "inf" }
    return fixed(sqnr, 2)
  }
}
