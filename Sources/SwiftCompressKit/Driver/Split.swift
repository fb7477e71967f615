import CheckpointIO
import Foundation

/// One part of a run split across processes or machines: `--shard-index i
/// --shard-count n`. Every part plans the whole model the same way; part i writes the
/// output shards s with s % n == i and transforms only the tensors with an output in
/// them. `swiftcompress merge` joins the parts into what one run writes.
public struct ShardSplit: Codable, Sendable, Equatable {
  public var index: Int
  public var count: Int

  public init(index: Int, count: Int) throws(SwiftCompressError) {
    guard count >= 1 else { throw .invalidOption(option: "--shard-count", reason: "must be at least 1") }
    guard (0..<count).contains(index) else {
      throw .invalidOption(option: "--shard-index", reason: "\(index) is not in 0..<\(count) (--shard-count \(count))")
    }
    self.index = index
    self.count = count
  }

  /// The output shards this part writes, of `shardCount`: s with s % count == index.
  public func shards(of shardCount: Int) -> [Int] {
    Array(stride(from: index, to: shardCount, by: count))
  }

  /// What to tell the user when this part gets no output shard (the output has fewer
  /// shards than there are parts), nil otherwise.
  public func emptyPartWarning(shardCount: Int) -> String? {
    guard shards(of: shardCount).isEmpty else { return nil }
    return
      "part \(index) of \(count) has no output shards: the output has \(Format.count(shardCount, "output shard")) for \(count) parts, and part \(index) writes the shards s with s % \(count) == \(index). It holds only the other files and its report, which merge still needs; use fewer parts or a smaller --max-shard-size"
  }
}

/// What a run learnt about one input tensor: its report entry and the raw error sums,
/// from which the totals are computed (in input order, so a merge of parts gives the
/// same bits as one run).
public struct TensorRecord: Codable, Sendable, Equatable {
  public enum Measurement: String, Codable, Sendable {
    case kept, exact, measured, unmeasured
  }

  /// Position in the input.
  public var index: Int
  public var entry: Report.TensorEntry?
  public var error: ErrorAccumulator?
  /// With a scale search: plain round-to-nearest's sums.
  public var baseline: ErrorAccumulator?
  public var measurement: Measurement

  var metrics: ErrorMetrics? {
    switch measurement {
    case .kept, .unmeasured: nil
    case .exact: .exact
    case .measured: error?.metrics
    }
  }
}

/// `swiftcompress-part.json`: the records of one part of a split run, for `merge`.
public struct PartRecords: Codable, Sendable, Equatable {
  public static let fileName = "swiftcompress-part.json"
  public var schema = "swiftcompress-part"
  public var split: ShardSplit
  public var records: [TensorRecord]

  public init(split: ShardSplit, records: [TensorRecord]) {
    self.split = split
    self.records = records
  }
}

/// `swiftcompress merge OUT PART...`: joins the parts of a split run into the output
/// one run would have written (the same bytes; the report differs in timings only).
public enum Merger {
  public static func merge(parts: [String], output: String, force: Bool) throws -> Report {
    guard !parts.isEmpty else { throw SwiftCompressError.invalidOption(option: "PART", reason: "give every part") }
    var manifests: [Manifest] = []
    var splits: [ShardSplit] = []
    var records: [Int: TensorRecord] = [:]
    for part in parts {
      guard FileManager.default.fileExists(atPath: part) else { throw CheckpointError.inputNotFound(path: part) }
      guard let manifest = try Manifest.load(folder: part) else {
        throw SwiftCompressError.invalidFolder(
          path: part, reason: "has no \(Manifest.fileName): it is not the output of a swiftcompress run")
      }
      let problems = manifest.problems(in: part)
      if !problems.isEmpty { throw CheckpointError.invalidMany(problems) }
      guard manifest.options["shard"] != nil,
        let data = FileManager.default.contents(atPath: part + "/" + PartRecords.fileName)
      else {
        throw SwiftCompressError.invalidFolder(
          path: part, reason: "is not a part of a split run (made without --shard-index/--shard-count)")
      }
      let partRecords: PartRecords
      do {
        partRecords = try Format.decodeJSON(PartRecords.self, from: data)
      } catch {
        throw SwiftCompressError.invalidFile(path: part + "/" + PartRecords.fileName, reason: "unreadable: \(error)")
      }
      for record in partRecords.records where records[record.index] == nil { records[record.index] = record }
      manifests.append(manifest)
      splits.append(partRecords.split)
    }
    // The parts must come from the same command on the same input, and cover every index once.
    var reference = manifests[0].options
    reference["shard"] = nil
    for (part, manifest) in zip(parts, manifests) {
      var options = manifest.options
      options["shard"] = nil
      if options != reference {
        let differing = Set(options.keys).union(reference.keys).filter { options[$0] != reference[$0] }.sorted()
        throw SwiftCompressError.invalidFolder(
          path: part,
          reason:
            "was made with other options than \(parts[0]) (\(differing.joined(separator: ", "))): merge only the parts of one split run"
        )
      }
    }
    let count = splits[0].count
    let indices = splits.map(\.index)
    guard splits.allSatisfy({ $0.count == count }), Set(indices) == Set(0..<count), indices.count == count else {
      let missing = Set(0..<count).subtracting(indices).sorted()
      throw SwiftCompressError.invalidFolders(
        paths: parts,
        reason:
          "are not the \(count) parts of one split: \(missing.isEmpty ? "a part is given twice" : "missing --shard-index \(missing.map(String.init).joined(separator: ", "))")"
      )
    }

    let folder = try OutputFolder(destination: output, inputs: parts.map(resolved), replace: force)
    var placed: [String: Manifest.Entry] = [:]
    for (part, manifest) in zip(parts, manifests) {
      for entry in manifest.files where entry.path != PartRecords.fileName {
        if let existing = placed[entry.path] {
          guard existing == entry else {
            throw SwiftCompressError.invalidFile(
              path: part + "/" + entry.path, reason: "differs from the same file in another part")
          }
          continue
        }
        try place(part + "/" + entry.path, at: folder.path(for: entry.path))
        placed[entry.path] = entry
      }
    }
    // The report: part 0's, with every part's tensors and totals recomputed from the sums.
    let first = parts[splits.firstIndex { $0.index == 0 } ?? 0]
    guard let reportData = FileManager.default.contents(atPath: first + "/" + Report.jsonFileName) else {
      throw SwiftCompressError.invalidFolder(path: first, reason: "has no \(Report.jsonFileName)")
    }
    var report: Report
    do {
      report = try Format.decodeJSON(Report.self, from: reportData)
    } catch {
      throw SwiftCompressError.invalidFile(path: first + "/" + Report.jsonFileName, reason: "unreadable: \(error)")
    }
    var seconds = 0.0
    var peak = 0
    for part in parts {
      if let data = FileManager.default.contents(atPath: part + "/" + Report.jsonFileName),
        let partReport = try? Format.decodeJSON(Report.self, from: data)
      {
        seconds += partReport.timing.seconds
        peak = max(peak, partReport.timing.peakRSSBytes)
      }
    }
    let gates = QualityGates(results: report.gates)
    report.output.path = output
    report.complete(with: Array(records.values), gates: gates)
    report.timing = Report.Timing(
      seconds: seconds, bytesPerSecond: seconds > 0 ? Double(report.input.bytes) / seconds : 0, peakRSSBytes: peak)
    try report.write(into: folder)
    let manifest = try Manifest.build(
      folder: folder.staging, tool: SwiftCompressVersion.current, options: reference, reports: Report.fileNames)
    try folder.write(Format.json(manifest), to: Manifest.fileName)
    try folder.commit()
    return report
  }

  static func resolved(_ path: String) -> String {
    URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
  }

  /// A hard link when the part is on the same file system (no copy), else a copy.
  static func place(_ source: String, at destination: String) throws {
    if link(source, destination) == 0 { return }
    do {
      try FileManager.default.copyItem(atPath: source, toPath: destination)
    } catch {
      throw CheckpointError.cannotCreateOutput(
        path: destination, reason: "cannot copy \(source): \(error.localizedDescription)")
    }
  }
}
