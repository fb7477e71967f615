import CKernels
import CheckpointIO
import Foundation

/// Summary statistics of one tensor's values (converted to Float32).
public struct TensorStatistics: Codable, Sendable, Equatable {
  /// Over finite values; nil when there are none.
  public var min: Double?
  public var max: Double?
  public var mean: Double?
  /// Population standard deviation (numpy's default, ddof 0).
  public var std: Double?
  public var absMax: Double?
  /// Fraction of elements that are exactly zero.
  public var zeroFraction: Double
  public var nanCount: Int
  public var infCount: Int

  enum CodingKeys: String, CodingKey {
    case min, max, mean, std
    case absMax = "absmax"
    case zeroFraction = "zero_fraction"
    case nanCount = "nan_count"
    case infCount = "inf_count"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(min, forKey: .min)
    try c.encode(max, forKey: .max)
    try c.encode(mean, forKey: .mean)
    try c.encode(std, forKey: .std)
    try c.encode(absMax, forKey: .absMax)
    try c.encode(zeroFraction, forKey: .zeroFraction)
    try c.encode(nanCount, forKey: .nanCount)
    try c.encode(infCount, forKey: .infCount)
  }

  /// Statistics of a stored tensor, computed chunk by chunk.
  public static func compute(_ input: TensorInput) -> TensorStatistics {
    let count = input.elementCount
    var sum = 0.0
    var sumSquares = 0.0
    var low = Float.infinity
    var high = -Float.infinity
    var absMax: Float = 0
    var zeros = 0
    var nans = 0
    var infs = 0
    forEachChunk(of: input, count: count) { _, chunk in
      guard let base = chunk.baseAddress else { return }
      var s = sck_stats()
      sck_stats_f32(base, chunk.count, &s)
      sum += s.sum
      sumSquares += s.sum_sq
      low = Swift.min(low, s.min)
      high = Swift.max(high, s.max)
      absMax = Swift.max(absMax, s.absmax)
      zeros += Int(s.zeros)
      nans += Int(s.nans)
      infs += Int(s.infs)
    }
    let finite = count - nans - infs
    let mean = finite > 0 ? sum / Double(finite) : nil
    let variance = mean.map { Swift.max(0, sumSquares / Double(finite) - $0 * $0) }
    return TensorStatistics(
      min: finite > 0 ? Double(low) : nil, max: finite > 0 ? Double(high) : nil, mean: mean,
      std: variance.map { $0.squareRoot() }, absMax: finite > 0 ? Double(absMax) : nil,
      zeroFraction: count > 0 ? Double(zeros) / Double(count) : 0, nanCount: nans, infCount: infs)
  }
}

/// What `inspect` reports.
public struct InspectionReport: Codable, Sendable, Equatable {
  public struct Tensor: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var parameters: Int
    public var bytes: Int
    public var file: String
    public var stats: TensorStatistics?
  }

  public struct Totals: Codable, Sendable, Equatable {
    public var tensors: Int
    public var parameters: Int
    public var bytes: Int
    /// Parameters and bytes per dtype.
    public var byDType: [String: DTypeTotal]
    enum CodingKeys: String, CodingKey {
      case tensors, parameters, bytes
      case byDType = "by_dtype"
    }
  }

  public struct DTypeTotal: Codable, Sendable, Equatable {
    public var tensors: Int
    public var parameters: Int
    public var bytes: Int
  }

  public var path: String
  public var layout: String
  public var files: [String]
  public var metadata: [String: String]?
  public var tensors: [Tensor]
  public var totals: Totals

  /// Reads the header(s) of `path`, and with `statistics` every tensor's values.
  public static func inspect(_ path: String, statistics: Bool) throws -> InspectionReport {
    let checkpoint = try Checkpoint.open(path)
    var tensors: [Tensor] = []
    var byDType: [String: DTypeTotal] = [:]
    for tensor in checkpoint.tensors {
      let info = tensor.info
      var stats: TensorStatistics?
      if statistics {
        stats = TensorStatistics.compute(
          TensorInput(descriptor: TensorDescriptor(info), bytes: checkpoint.bytes(of: tensor)))
        checkpoint.release(tensor)
      }
      tensors.append(
        Tensor(
          name: info.name, dtype: info.dtype.rawValue, shape: info.shape, parameters: info.elementCount,
          bytes: info.byteCount, file: (checkpoint.files[tensor.file].path as NSString).lastPathComponent,
          stats: stats))
      var total = byDType[info.dtype.rawValue] ?? DTypeTotal(tensors: 0, parameters: 0, bytes: 0)
      total.tensors += 1
      total.parameters += info.elementCount
      total.bytes += info.byteCount
      byDType[info.dtype.rawValue] = total
    }
    return InspectionReport(
      path: path, layout: checkpoint.layout.rawValue,
      files: checkpoint.files.map { ($0.path as NSString).lastPathComponent }, metadata: checkpoint.metadata,
      tensors: tensors,
      totals: Totals(
        tensors: tensors.count, parameters: tensors.reduce(0) { $0 + $1.parameters },
        bytes: tensors.reduce(0) { $0 + $1.bytes }, byDType: byDType))
  }
}

/// What `verify` reports.
public struct VerificationReport: Codable, Sendable, Equatable {
  public var path: String
  public var layout: String?
  public var files: Int
  public var tensors: Int
  public var problems: [ValidationProblem]
  /// Facts worth knowing that do not make the checkpoint invalid.
  public var warnings: [String]
  /// How the checkpoint loads (its config checked against its tensors).
  public var notes: [String] = []
  /// With --pattern N:M: the pattern and the weights checked for it.
  public var pattern: String? = nil
  public var patternTensors: Int? = nil
  public var valid: Bool { problems.isEmpty }

  enum CodingKeys: String, CodingKey {
    case path, layout, files, tensors, problems, warnings, notes, valid
    case pattern
    case patternTensors = "pattern_tensors"
  }

  public init(
    path: String, layout: String?, files: Int, tensors: Int, problems: [ValidationProblem], warnings: [String]
  ) {
    self.path = path
    self.layout = layout
    self.files = files
    self.tensors = tensors
    self.problems = problems
    self.warnings = warnings
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    path = try c.decode(String.self, forKey: .path)
    layout = try c.decodeIfPresent(String.self, forKey: .layout)
    files = try c.decode(Int.self, forKey: .files)
    tensors = try c.decode(Int.self, forKey: .tensors)
    problems = try c.decode([ValidationProblem].self, forKey: .problems)
    warnings = try c.decode([String].self, forKey: .warnings)
    notes = try c.decodeIfPresent([String].self, forKey: .notes) ?? []
    pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
    patternTensors = try c.decodeIfPresent(Int.self, forKey: .patternTensors)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(path, forKey: .path)
    try c.encode(layout, forKey: .layout)
    try c.encode(files, forKey: .files)
    try c.encode(tensors, forKey: .tensors)
    try c.encode(problems, forKey: .problems)
    try c.encode(warnings, forKey: .warnings)
    try c.encode(notes, forKey: .notes)
    try c.encode(valid, forKey: .valid)
    try c.encodeIfPresent(pattern, forKey: .pattern)
    try c.encodeIfPresent(patternTensors, forKey: .patternTensors)
  }

  /// Runs every validation on `path`: the format rules of every file, the index
  /// against the shards, and the values (NaN and infinity in float tensors).
  /// Throws only when `path` does not exist or is not a checkpoint at all.
  public static func verify(_ path: String, pattern: NMPattern? = nil) throws(CheckpointError) -> VerificationReport {
    let (opened, problems) = try Checkpoint.validate(path)
    guard let checkpoint = opened else {
      return VerificationReport(
        path: path, layout: nil, files: 0, tensors: 0, problems: problems + manifestProblems(path), warnings: [])
    }
    var found: [ValidationProblem] = []
    var warnings: [String] = []
    for tensor in checkpoint.tensors where tensor.info.dtype.isFloatingPoint {
      let stats = TensorStatistics.compute(
        TensorInput(descriptor: TensorDescriptor(tensor.info), bytes: checkpoint.bytes(of: tensor)))
      checkpoint.release(tensor)
      if stats.nanCount + stats.infCount > 0 {
        found.append(
          ValidationProblem(
            rule: .nonFiniteValues, file: checkpoint.files[tensor.file].path, tensor: tensor.name,
            detail: "\(stats.nanCount) NaN and \(stats.infCount) infinite values among \(tensor.info.elementCount)"))
      }
    }
    if checkpoint.layout == .sharded, let declared = declaredTotalSize(checkpoint) {
      let actual = checkpoint.tensorByteCount
      if declared != actual {
        warnings.append(
          "the index declares total_size \(declared) but the tensors hold \(actual) bytes (loaders ignore total_size)")
      }
    }
    if !checkpoint.ignoredWeightFiles.isEmpty {
      warnings.append(
        "not part of the model and ignored: \(checkpoint.ignoredWeightFiles.joined(separator: ", "))")
    }
    let loading = LoaderContract.check(checkpoint)
    warnings += OnlineRotation.loadingWarnings(checkpoint)
    var report = VerificationReport(
      path: path, layout: checkpoint.layout.rawValue, files: checkpoint.files.count,
      tensors: checkpoint.tensors.count, problems: found + loading.problems, warnings: warnings)
    report.notes = loading.notes
    if let pattern {
      let (checked, violations) = checkPattern(checkpoint, pattern)
      report.pattern = pattern.description
      report.patternTensors = checked
      report.problems += violations
    }
    report.problems += manifestProblems(path)
    return report
  }

  /// An output folder's manifest against its files (none without a manifest).
  static func manifestProblems(_ path: String) -> [ValidationProblem] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
      return []
    }
    do {
      return try Manifest.load(folder: path)?.problems(in: path) ?? []
    } catch {
      if case .invalid(let problem) = error { return [problem] }
      return []
    }
  }

  /// Checks N:M sparsity on the weights pruning selects by default (2-D float .weight
  /// tensors, not embeddings, not lm_head) and on bitmask-stored ones (from their masks).
  static func checkPattern(_ checkpoint: Checkpoint, _ pattern: NMPattern) -> (Int, [ValidationProblem]) {
    var checked = 0
    var problems: [ValidationProblem] = []
    for tensor in checkpoint.tensors {
      let info = tensor.info
      let name = tensor.name
      var nonZero: (Int) -> Bool
      let rows: Int
      let columns: Int
      if name.hasSuffix(".bitmask"), info.shape.count == 2, info.dtype == .u8,
        let shapeTensor = checkpoint.tensor(named: String(name.dropLast(".bitmask".count)) + ".shape"),
        shapeTensor.info.dtype == .i64, shapeTensor.info.elementCount == 2
      {
        let shapeBytes = checkpoint.bytes(of: shapeTensor)
        let dims = (0..<2).map { Int(shapeBytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        (rows, columns) = (dims[0], dims[1])
        let bytes = checkpoint.bytes(of: tensor)
        let rowBytes = info.shape[1]
        nonZero = { i in bytes[(i / columns) * rowBytes + (i % columns) / 8] >> ((i % columns) % 8) & 1 == 1 }
      } else if name.hasSuffix(".weight"), info.shape.count == 2, info.dtype.isFloatingPoint,
        !TensorSelection.isEmbedding(name), !name.hasPrefix("lm_head")
      {
        (rows, columns) = (info.shape[0], info.shape[1])
        let values = Float32Conversion.floats(checkpoint.bytes(of: tensor), dtype: info.dtype, count: rows * columns)
        nonZero = { values[$0] != 0 }
      } else {
        continue
      }
      checked += 1
      guard columns % pattern.m == 0 else {
        problems.append(
          ValidationProblem(
            rule: .sparsityPattern, file: checkpoint.files[tensor.file].path, tensor: name,
            detail: "rows of \(columns) values cannot be split into groups of \(pattern.m)"))
        continue
      }
      var violations = 0
      var first: Int?
      for group in stride(from: 0, to: rows * columns, by: pattern.m) {
        var count = 0
        for i in group..<(group + pattern.m) where nonZero(i) { count += 1 }
        if count > pattern.n {
          violations += 1
          if first == nil { first = group }
        }
      }
      checkpoint.release(tensor)
      if let first {
        problems.append(
          ValidationProblem(
            rule: .sparsityPattern, file: checkpoint.files[tensor.file].path, tensor: name,
            detail:
              "\(violations) of \((rows * columns) / pattern.m) groups hold more than \(pattern.n) non-zeros, the first at row \(first / columns), columns \(first % columns)..<\(first % columns + pattern.m)"
          ))
      }
    }
    return (checked, problems)
  }

  private static func declaredTotalSize(_ checkpoint: Checkpoint) -> Int? {
    guard let indexName = checkpoint.indexFileName,
      let data = FileManager.default.contents(atPath: checkpoint.folder + "/" + indexName),
      let json = try? JSONParser.parse(Array(data)),
      let total = json["metadata"]?["total_size"]?.uint64Value
    else { return nil }
    return Int(exactly: total)
  }
}
