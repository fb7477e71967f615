import ArgumentParser
import CKernels
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Rewrite a checkpoint through the pipeline: reshard it, or convert float tensors to another dtype.",
      discussion: """
        Without --dtype every tensor is copied unchanged (an identity pass), which reshards \
        the checkpoint with --max-shard-size. With --dtype, selected floating-point tensors \
        are rounded to nearest even; by default 1-D tensors and embeddings are kept \
        (use --include to choose explicitly). The output folder gets the weights, an index \
        when sharded, every non-weight file of the input, and swiftcompress-report.{json,md}.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "Convert selected float tensors to this dtype.")
    var dtype: DType?

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    func validate() throws {
      if let dtype, !Float32Conversion.encodableDTypes.contains(dtype) {
        throw ValidationError(
          "--dtype \(dtype.rawValue) cannot be written by convert; choose one of F32, F16, BF16, F64.")
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        let pass: any CompressionPass =
          if let dtype { try CastPass(configuration: .init(dtype: dtype)) } else { IdentityPass() }
        let options = try self.options.compression(
          input: input, output: output, command: "convert", pass: pass, gates: gates)
        try runPipeline(pass: pass, options: options, shared: self.options.output)
      }
    }
  }
}

/// Runs a pass (or only plans or explains it) with progress on a terminal and prints
/// the result; a failed quality gate exits 3 once the output is written.
func runPipeline(pass: any CompressionPass, options: CompressionOptions, shared: OutputOptions) throws {
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
    table: { SummaryTable.render(report, split: options.split) }, gates: report.gates, shared: shared)
}

/// Warnings on stderr, then the JSON or the table on stdout (nothing with --quiet), then
/// exit 3 when a gate failed.
func printOutcome(
  warnings: [String], notes: [String] = [], json: @autoclosure () -> String, table: () -> String,
  gates: [GateResult],
  shared: OutputOptions
) throws {
  if !shared.quiet {
    for warning in warnings { Diagnostics.warning(warning) }
    for note in notes { Diagnostics.note(note) }
  }
  if shared.json {
    printResult(json())
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

/// The `--dry-run` table: one row per output tensor, the input's columns on its first.
enum PlanTable {
  static func render(_ plan: PlanReport) -> String {
    var rows: [[String]] = []
    for t in plan.tensors {
      for (i, o) in t.outputs.enumerated() {
        let first = i == 0
        rows.append([
          first ? t.name : "", first ? t.action : "", o.name, o.dtype,
          "[" + o.shape.map(String.init).joined(separator: ", ") + "]",
          "\(o.bytes)", first ? "\(t.bytesBefore)" : "", first ? "\(t.bytesAfter)" : "",
          first ? Format.fixed(t.bitsPerWeightAfter, 2) : "",
        ])
      }
      if t.outputs.isEmpty {
        rows.append([t.name, t.action, "-", "", "", "0", "\(t.bytesBefore)", "0", Format.fixed(0, 2)])
      }
    }
    let header = ["tensor", "action", "output", "dtype", "shape", "bytes", "bytes before", "bytes after", "bits/w"]
    var text = TextTable.render(header: header, rows: rows, rightAligned: Set([5, 6, 7, 8])) + "\n"
    for t in plan.tensors where !t.isKept {
      if let reason = t.reason { text += "\(t.name): \(reason)\n" }
    }
    let x = plan.totals
    text +=
      "plan: \(x.transformed) of \(Format.count(x.tensors, "tensor")) transformed, \(x.kept) kept; \(Format.bytes(x.bytesBefore)) -> \(Format.bytes(x.bytesAfter)) (ratio \(Format.fixed(x.compressionRatio, 3)), \(Format.fixed(x.bitsPerWeightBefore, 2)) -> \(Format.fixed(x.bitsPerWeightAfter, 2)) bits/weight) in \(Format.count(plan.files.count, "file"))\n"
    for gate in plan.gates { text += "gate \(gate.summary)\n" }
    text += "dry run: nothing was written to \(plan.output)\n"
    return text
  }
}

/// The summary printed after a run (or by merge). With `split`, the run wrote only that
/// part's output shards.
enum SummaryTable {
  static func render(_ report: Report, split: ShardSplit? = nil) -> String {
    let t = report.totals
    let pruning = t.sparsity != nil
    var rows: [[String]] = []
    for entry in report.tensors where entry.action == "transformed" {
      let m = entry.metrics
      var row = [
        entry.name, entry.dtype + " -> " + Set(entry.outputs.map(\.dtype)).sorted().joined(separator: "+"),
        "\(entry.bytesBefore)", "\(entry.bytesAfter)", Format.fixed(entry.bitsPerWeightAfter, 2),
      ]
      if pruning { row.append(entry.sparsity.map { Format.fixed($0.achieved * 100, 1) + "%" } ?? "-") }
      row += [
        Format.metric(m?.relativeFrobeniusError), Format.sqnr(m), Format.cosine(m?.cosineSimilarity),
        Format.metric(m?.maxAbsError),
      ]
      rows.append(row)
    }
    var text = ""
    if !rows.isEmpty {
      let header =
        ["tensor", "dtype", "bytes before", "bytes after", "bits/w"] + (pruning ? ["sparsity"] : [])
        + ["rel. error", "SQNR dB", "cosine", "max abs err"]
      text += TextTable.render(header: header, rows: rows, rightAligned: Set(2..<header.count))
      text += "\n"
    }
    let m = t.metrics
    text +=
      "\(t.transformed) of \(Format.count(t.tensors, "tensor")) transformed, \(t.kept) kept; \(Format.bytes(t.bytesBefore)) -> \(Format.bytes(t.bytesAfter)) (ratio \(Format.fixed(t.compressionRatio, 3)), \(Format.fixed(t.bitsPerWeightBefore, 2)) -> \(Format.fixed(t.bitsPerWeightAfter, 2)) bits/weight)\n"
    if let sparsity = t.sparsity {
      text += Format.sparsitySummary(sparsity) + "\n"
    }
    if let m {
      text +=
        "error: relative \(Format.metric(m.relativeFrobeniusError)), SQNR \(Format.sqnr(m)) dB, cosine \(Format.cosine(m.cosineSimilarity)), max abs \(Format.metric(m.maxAbsError))\n"
    }
    for gate in report.gates { text += "gate \(gate.summary)\n" }
    let files = split?.shards(of: report.output.files.count).count ?? report.output.files.count
    text +=
      "wrote \(report.output.path) (\(Format.count(files, "weight file"))) in \(Format.fixed(report.timing.seconds, 2)) s; report: \(report.output.path)/\(Report.markdownFileName)\n"
    return text
  }
}
