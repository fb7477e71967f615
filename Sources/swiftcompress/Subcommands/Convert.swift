import ArgumentParser
import CKernels
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Rewrite a checkpoint through the pipeline: reshard it, or convert float tensors to another dtype.",
      discussion: """
        Without --dtype every tensor is copied unchanged (an identity pass), which reshards
        the checkpoint with --max-shard-size. With --dtype, selected floating-point tensors
        are rounded to nearest even; by default 1-D tensors and embeddings are kept
        (use --include to choose explicitly). The output folder gets the weights, an index
        when sharded, every non-weight file of the input, and swiftcompress-report.{json,md}.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "Convert selected float tensors to this dtype: F32, F16, BF16 or F64.")
    var dtype: DType?

    @OptionGroup var options: PipelineOptions

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
        let options = CompressionOptions(
          input: input, output: output, selection: try self.options.selection(),
          maxShardSize: self.options.maxShardSize.bytes, force: self.options.force, command: "convert")
        try runPipeline(pass: pass, options: options, shared: self.options)
      }
    }
  }
}

/// Runs a pass with progress on a terminal and prints the result.
func runPipeline(pass: any CompressionPass, options: CompressionOptions, shared: PipelineOptions) throws {
  sck_keep_large_allocations()
  let progress = Diagnostics.isTerminal && !shared.quiet ? ProgressLine() : nil
  var callback: (@Sendable (ProgressUpdate) -> Void)?
  if let progress {
    callback = { progress.update($0) }
  }
  let report = try Compressor.run(pass: pass, options: options, progress: callback)
  progress?.finish()
  if !shared.quiet {
    for warning in report.warnings { Diagnostics.warning(warning) }
  }
  if shared.json {
    printResult(report.jsonText())
  } else if !shared.quiet {
    printResult(SummaryTable.render(report))
  }
}

/// The summary printed after a run.
enum SummaryTable {
  static func render(_ report: Report) -> String {
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
      "\(t.transformed) of \(t.tensors) tensors transformed, \(t.kept) kept; \(Format.bytes(t.bytesBefore)) -> \(Format.bytes(t.bytesAfter)) (ratio \(Format.fixed(t.compressionRatio, 3)), \(Format.fixed(t.bitsPerWeightBefore, 2)) -> \(Format.fixed(t.bitsPerWeightAfter, 2)) bits/weight)\n"
    if let sparsity = t.sparsity {
      text += Format.sparsitySummary(sparsity) + "\n"
    }
    if let m {
      text +=
        "error: relative \(Format.metric(m.relativeFrobeniusError)), SQNR \(Format.sqnr(m)) dB, cosine \(Format.cosine(m.cosineSimilarity)), max abs \(Format.metric(m.maxAbsError))\n"
    }
    text +=
      "wrote \(report.output.path) (\(report.output.files.count) weight file(s)) in \(Format.fixed(report.timing.seconds, 2)) s; report: \(report.output.path)/\(Report.markdownFileName)\n"
    return text
  }
}
