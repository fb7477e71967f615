import CheckpointIO
import Foundation

extension Compressor {
  /// The report step: the report of a finished run, from its records, with the plan's
  /// warnings and notes and, when it resumed an interrupted run, how much it kept.
  static func report(
    checkpoint: Checkpoint, plan: CompressionPlan, options: CompressionOptions, staging: Staging,
    editedFiles: [String], records: [TensorRecord], seconds elapsed: Double
  ) -> Report {
    let byteCount = checkpoint.tensorByteCount
    var report = Report(
      command: options.command, checkpoint: checkpoint, plan: plan, options: options, pass: plan.pass,
      tensors: [], editedFiles: editedFiles, totalMetrics: nil,
      timing: Report.Timing(
        seconds: elapsed, bytesPerSecond: elapsed > 0 ? Double(byteCount) / elapsed : 0,
        peakRSSBytes: ResourceUsage.peakResidentBytes()))
    report.complete(with: records, gates: options.gates)
    report.warnings = plan.warnings
    report.notes = plan.notes
    if !staging.adopted.isEmpty {
      report.warnings.append(
        "resumed an interrupted run: \(staging.adopted.count) of \(plan.layout.shards.count) output shards were already written and still matched their checksums"
      )
    }
    return report
  }

  /// The commit step: writes the effective recipe, a split run's records and the
  /// report's renderings into the staging folder, while the writes `writer` still has
  /// waiting run beside the renderings; then finishes `writer`, writes the manifest
  /// (`identity` as its options; the shards' checksums from the journal) and renames the
  /// folder into place.
  static func commit(
    _ report: Report, records: [TensorRecord], into folder: OutputFolder, options: CompressionOptions,
    identity: [String: String], writer: OutputWriter
  ) throws {
    if let recipe = options.recipe {
      try folder.write(recipe.yamlText(), to: Recipe.fileName)
    }
    if let split = options.split {
      try folder.write(Format.json(PartRecords(split: split, records: records)), to: PartRecords.fileName)
    }
    try Parallel.withSideJobs(writer.writesBehind) { try report.write(into: folder) }
    try writer.finish()
    let manifest = try Manifest.build(
      folder: folder.staging, tool: SwiftCompressVersion.current, options: identity, reports: Report.fileNames,
      known: writer.finishedShards)
    try folder.write(Format.json(manifest), to: Manifest.fileName)
    try folder.commit()
  }
}

/// Process resource usage.
public enum ResourceUsage {
  /// Peak resident set size of this process, in bytes. On Linux this is VmHWM of
  /// /proc/self/status, which (unlike getrusage) does not include the peak of the
  /// process image this one was exec'd from.
  public static func peakResidentBytes() -> Int {
    #if os(Linux)
      if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
      {
        return kilobytes * 1024
      }
    #endif
    var usage = rusage()
    #if os(Linux)
      guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
      return Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
    #else
      guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
      return Int(usage.ru_maxrss)  // bytes on Darwin
    #endif
  }
}
