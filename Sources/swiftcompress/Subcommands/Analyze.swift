import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "analyze",
      abstract: "Measure each linear weight's error under each candidate scheme (sensitivity), for mixed precision.",
      discussion: """
        Every linear weight quantize would select (not embeddings, not --ignore) is encoded in every \
        scheme of --schemes exactly as quantize writes it, decoded and compared: the relative Frobenius \
        error, the SQNR, the squared error, and with --calibration (calibrate's statistics) the output \
        error proxy tr((W - Q) XᵀX (W - Q)ᵀ) (its diagonal without --hessians), and with --data or \
        --tokens the model's own loss with only that weight quantized (mean KL divergence for \
        decoders, 1 - mean embedding cosine for encoders, one evaluation per weight and scheme). \
        Each weight is read once for all schemes. Prints a table \
        (or JSON with --json); --html writes the tensor x scheme heat map. quantize --target-bpw \
        minimises the same losses. See docs/mixed-precision.md.

        Exit codes: 64 usage; 65 invalid input.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Option(
      name: .long,
      help: ArgumentHelp(
        "The candidate schemes, comma-separated: scheme names, SCHEME:gN for an integer scheme's group size, keep (default: \(SchemeChoice.defaultCandidates.map(\.description).joined(separator: ","))).",
        valueName: "list"))
    var schemes: String?

    @Option(
      name: .long, parsing: .unconditional,
      help:
        "Inputs per group of an integer scheme given without :gN (default: \(QuantizePass.Configuration.defaultGroupSize))."
    )
    var groupSize: Int?

    @Option(
      name: .long,
      help: ArgumentHelp("Scales as quantize --scale-search chooses them.", valueName: "none|mse"))
    var scaleSearch: ScaleSearch = QuantizePass.Configuration.defaultScaleSearch

    @Option(
      name: .long,
      help: ArgumentHelp(
        "calibrate's statistics file: adds the output error proxy, which then is the loss.", valueName: "file"))
    var calibration: String?

    @OptionGroup var ignoring: IgnoreOptions

    @OptionGroup(title: "Data (the model's measured loss per weight and scheme)") var data: DataOptions

    @OptionGroup var batch: BatchOptions

    @Flag(name: .long, help: "Print the measurements as JSON.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Write the heat map as an HTML page.", valueName: "file"))
    var html: String?

    func run() throws {
      try Diagnostics.reportingErrors {
        try Parallel.withJobs(batch.jobs) {
          let group = groupSize ?? QuantizePass.Configuration.defaultGroupSize
          let candidates =
            try schemes.map { (text) throws(SwiftCompressError) in
              try SchemeChoice.list(text, defaultGroupSize: group)
            } ?? SchemeChoice.defaultCandidates
          var configuration = QuantizePass.Configuration(scheme: .w4a16, groupSize: group, scaleSearch: scaleSearch)
          if let modules = ignoring.modules { configuration.ignore = modules }
          let pass = try QuantizePass(configuration: configuration)
          let checkpoint = try Checkpoint.open(input)
          let statistics = try calibration.map { (path) throws(SwiftCompressError) in
            try Sensitivity.Statistics.load(path, modules: try pass.selectedModules(checkpoint))
          }
          let modelLoss =
            data.isGiven ? try measuredModelLoss(model: input, data: data, batchTokens: batch.batchTokens) : nil
          var drawn = false
          let sensitivity = try Sensitivity.measure(
            checkpoint, pass: pass, candidates: candidates, statistics: statistics, modelLoss: modelLoss,
            progress: Diagnostics.drawsProgress
              ? { done, total in
                Diagnostics.write("\r\u{1B}[2Kanalyze: \(done)/\(total) weights")
                drawn = true
              } : nil)
          if drawn { Diagnostics.write("\r\u{1B}[2K") }
          if sensitivity.rows.isEmpty {
            throw SwiftCompressError.invalidCheckpoint(path: input, reason: "has no linear weight to analyze")
          }
          if let html {
            do {
              try Data(sensitivity.html(title: input).utf8).write(to: URL(fileURLWithPath: html))
            } catch {
              throw CheckpointError.cannotCreateOutput(path: html, reason: error.localizedDescription)
            }
          }
          printResult(json ? Format.json(sensitivity) + "\n" : SensitivityTable.render(sensitivity))
        }
      }
    }
  }
}

/// The tables `analyze` prints.
enum SensitivityTable {
  /// The text table `analyze` prints: one row per weight, per candidate its relative error
  /// (and with calibration statistics, the output error proxy), then the totals.
  static func render(_ s: Sensitivity) -> String {
    let (candidates, rows, weighted) = (s.candidates, s.rows, s.weighted)
    let header = ["tensor", "shape"] + candidates.map(\.description)
    func rowsOf(_ value: (Sensitivity.Cell) -> String) -> [[String]] {
      rows.map { row in
        [row.tensor, row.shape.map(String.init).joined(separator: "x")]
          + candidates.map { choice in row.cells.first { $0.choice == choice }.map(value) ?? "-" }
      }
    }
    var text = "relative error ||W - Q|| / ||W||:\n"
    text +=
      TextTable.render(
        header: header, rows: rowsOf { Format.metric($0.relativeError) },
        rightAligned: Set(2..<header.count)) + "\n"
    if weighted {
      text += "\noutput error proxy Σ_ij (W - Q)_ij² ||x_j||² (calibrate's statistics):\n"
      text +=
        TextTable.render(
          header: header, rows: rowsOf { Format.metric($0.outputError) }, rightAligned: Set(2..<header.count)) + "\n"
    }
    if let metric = s.measuredMetric {
      text += "\nmeasured \(metric) with only that weight quantized:\n"
      text +=
        TextTable.render(
          header: header, rows: rowsOf { Format.metric($0.measuredLoss) }, rightAligned: Set(2..<header.count)) + "\n"
    }
    var totalRows: [[String]] = [["bits per weight", ""], ["relative error", ""], ["summed loss", ""]]
    for total in s.totals() {
      totalRows[0].append(total.map { Format.fixed($0.bitsPerWeight, 3) } ?? "-")
      totalRows[1].append(total.map { Format.metric($0.relativeError) } ?? "-")
      totalRows[2].append(total.map { Format.metric($0.loss) } ?? "-")
    }
    let loss = s.measuredMetric.map { "summed \($0)" } ?? (weighted ? "output error proxy" : "squared weight error")
    text += "\nall \(Format.count(rows.count, "weight")) (loss: \(loss)):\n"
    text += TextTable.render(header: header, rows: totalRows, rightAligned: Set(2..<header.count)) + "\n"
    for choice in candidates {
      let missing = rows.filter { $0.unavailable[choice.description] != nil }
      guard let first = missing.first, let reason = first.unavailable[choice.description] else { continue }
      text +=
        "\(choice) cannot store \(Format.count(missing.count, "weight")) (the allocation does not offer it for them), e.g. \(reason)\n"
    }
    return text
  }

}
