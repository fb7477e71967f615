import ArgumentParser
import CKernels
import CheckpointIO
import SwiftCompressKit

/// Runs a pass (or only plans or explains it) with progress on a terminal and prints
/// the result; a failed quality gate exits 3 once the output is written.
///
/// With `jsonSink`, the --json report of a run that writes goes to it instead of standard output
/// (`run` adds its evaluation to it).
func runPipeline(
  pass: any CompressionPass, options: CompressionOptions, shared: OutputOptions,
  jsonSink: ((String) -> Void)? = nil
) throws {
  if shared.explain {
    let explanation = try Compressor.explain(pass: pass, options: options)
    if shared.json {
      let entries = explanation.map { ExplainEntry(tensor: $0.tensor, decisions: $0.lines) }
      printResult(Format.json(entries))
    } else {
      printResult(
        explanation.map { ([$0.tensor] + $0.lines.map { "  " + $0 }).joined(separator: "\n") }.joined(separator: "\n")
          + "\n")
    }
    return
  }
  if shared.dryRun {
    let plan = try Compressor.dryRun(pass: pass, options: options)
    let split = options.split?.emptyPartWarning(shardCount: plan.files.count)
    try printOutcome(
      warnings: plan.warnings + [split].compactMap { $0 }, notes: plan.notes, json: plan.jsonText(),
      table: { PlanTable.render(plan) }, gates: plan.gates, shared: shared)
    return
  }
  sck_keep_large_allocations()
  let progress = Diagnostics.drawsProgress && !shared.quiet && !shared.verbose ? ProgressLine() : nil
  var callback: (@Sendable (ProgressUpdate) -> Void)?
  if let progress {
    callback = { progress.update($0) }
  } else if shared.verbose {
    callback = { Diagnostics.write(Diagnostics.visible(VerboseLine.render($0))) }
  }
  let report = try Compressor.run(pass: pass, options: options, progress: callback)
  progress?.finish()
  let split = options.split?.emptyPartWarning(shardCount: report.output.files.count)
  try printOutcome(
    warnings: report.warnings + [split].compactMap { $0 }, notes: report.notes, json: report.jsonText(),
    table: { SummaryTable.render(report, split: options.split) }, gates: report.gates, shared: shared,
    jsonSink: jsonSink)
}

/// Warnings on stderr, then the JSON or the table on stdout (nothing with --quiet), then
/// exit 3 when a gate failed.
func printOutcome(
  warnings: [String], notes: [String] = [], json: @autoclosure () -> String, table: () -> String,
  gates: [GateResult],
  shared: OutputOptions, jsonSink: ((String) -> Void)? = nil
) throws {
  if !shared.quiet {
    for warning in warnings { Diagnostics.warning(warning) }
    for note in notes { Diagnostics.note(note) }
  }
  if shared.json {
    if let jsonSink { jsonSink(json()) } else { printResult(json()) }
  } else if !shared.quiet {
    printResult(table())
  }
  try failOnGates(gates, quiet: shared.quiet)
}

/// Exit 3 when a gate failed, naming each on stderr (even with --quiet: it is the error).
func failOnGates(_ gates: [GateResult], quiet: Bool) throws {
  let failed = gates.filter { !$0.passed }
  guard !failed.isEmpty else { return }
  for gate in failed { Diagnostics.error("quality gate failed: \(gate.summary)") }
  throw ExitCode(ExitStatus.gateFailed)
}

/// One `--explain --json` record.
struct ExplainEntry: Codable {
  var tensor: String
  var decisions: [String]
}

/// The `--verbose` line of a finished tensor.
enum VerboseLine {
  static func render(_ p: ProgressUpdate) -> String {
    let e = p.entry
    var text = "[\(p.tensorsDone)/\(p.tensorCount)] \(e.name): \(e.action)"
    if let reason = e.reason { text += " (\(reason))" }
    text += ", \(e.bytesBefore) -> \(e.bytesAfter) bytes"
    if let m = e.metrics { text += ", rel. error \(Format.metric(m.relativeFrobeniusError))" }
    return Diagnostics.visible(text) + "\n"
  }
}
