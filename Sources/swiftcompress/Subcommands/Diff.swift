import ArgumentParser
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "diff",
      abstract: "Compare two checkpoints tensor by tensor: the error of B against A as the reference.",
      discussion: """
        Either checkpoint may be in any format this tool reads: plain safetensors of any float \
        dtype, or a compressed output of quantize, prune --sparse-format bitmask or factorize, \
        which is decompressed to Float32 one tensor at a time. Float tensors get the relative \
        Frobenius error, SQNR, cosine similarity and largest absolute error; integer and boolean \
        tensors are compared for exact equality. The totals aggregate the float tensors as \
        quantize's report does (error energy over reference energy).

        Exit codes: 65 when a tensor is only in one checkpoint or has different shapes \
        (unless --allow-missing); otherwise, with --max-error, 3 when ANY compared tensor's \
        relative error is above it (or it holds NaN or infinity, or an integer tensor differs), \
        naming those tensors on standard error; 0 otherwise.
        """)

    @Argument(help: "The reference checkpoint A: a .safetensors file or a folder.")
    var a: String

    @Argument(help: "The checkpoint B compared with A.")
    var b: String

    @Option(
      name: .long, parsing: .unconditional,
      help: ArgumentHelp(
        "Exit 3 when any tensor's relative error (||A - B|| / ||A||) is above this.", valueName: "error"))
    var maxError: Double?

    @Flag(name: .long, help: "Do not fail (exit 65) on tensors only one side has or with different shapes.")
    var allowMissing = false

    @Option(
      name: .long, parsing: .singleValue,
      help: ArgumentHelp(
        "Compare only tensors whose (dense) name matches this regular expression (repeatable).", valueName: "regex"))
    var include: [String] = []

    @Option(
      name: .long, parsing: .singleValue,
      help: ArgumentHelp(
        "Leave out tensors whose name matches this regular expression (repeatable).", valueName: "regex"))
    var exclude: [String] = []

    @Flag(name: .long, help: "Print the diff report as JSON on standard output.")
    var json = false

    func validate() throws {
      if let maxError, !(maxError.isFinite && maxError >= 0) {
        throw ValidationError("--max-error must be a finite number >= 0, not \(maxError).")
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        let selection =
          include.isEmpty && exclude.isEmpty ? nil : try TensorSelection(include: include, exclude: exclude)
        let report = try CheckpointDiff.compare(a, b, selection: selection)
        for warning in report.warnings { Diagnostics.warning(warning) }
        printResult(json ? report.jsonText() : DiffTable.render(report))

        var status: Int32 = 0
        if !report.isComplete && !allowMissing {
          var parts: [String] = []
          if !report.onlyInA.isEmpty { parts.append("\(report.onlyInA.count) only in A") }
          if !report.onlyInB.isEmpty { parts.append("\(report.onlyInB.count) only in B") }
          if !report.shapeMismatches.isEmpty {
            parts.append(
              "\(report.shapeMismatches.count) with \(report.shapeMismatches.count == 1 ? "a different shape" : "different shapes")"
            )
          }
          Diagnostics.error(
            "the checkpoints hold different tensors (\(parts.joined(separator: ", "))); pass --allow-missing to compare the common ones"
          )
          for name in report.onlyInA { Diagnostics.write(Diagnostics.visible("  only in A: \(name)\n")) }
          for name in report.onlyInB { Diagnostics.write(Diagnostics.visible("  only in B: \(name)\n")) }
          for m in report.shapeMismatches {
            Diagnostics.write(Diagnostics.visible("  shape mismatch: \(m.name): A \(m.aShape) vs B \(m.bShape)\n"))
          }
          status = ExitStatus.invalidData
        }
        if let maxError {
          let failing = report.tensors(exceeding: maxError)
          if !failing.isEmpty {
            Diagnostics.error(
              "\(failing.count) of \(Format.count(report.tensors.count, "tensor")) \(failing.count == 1 ? "exceeds" : "exceed") --max-error \(Format.metric(maxError)):"
            )
            for t in failing {
              let detail =
                if let m = t.metrics {
                  "relative error \(Format.metric(m.relativeFrobeniusError))"
                    + (m.nonFiniteCount > 0 ? ", \(m.nonFiniteCount) NaN or infinite values" : "")
                } else { "integer values differ" }
              Diagnostics.write(Diagnostics.visible("  \(t.name): \(detail)\n"))
            }
            if status == 0 { status = ExitStatus.gateFailed }
          }
        }
        if status != 0 { throw ExitCode(status) }
      }
    }
  }
}

/// The table `diff` prints for people.
enum DiffTable {
  static func render(_ report: DiffReport) -> String {
    var rows: [[String]] = []
    for t in report.tensors {
      let storage = t.aStorage == t.bStorage ? t.aStorage : t.aStorage + " -> " + t.bStorage
      var row = [t.name, storage, t.shape.map(String.init).joined(separator: "x")]
      if let m = t.metrics {
        row += [
          Format.metric(m.relativeFrobeniusError), Format.sqnr(m), Format.cosine(m.cosineSimilarity),
          Format.metric(m.maxAbsError),
        ]
      } else {
        row += [t.equal ? "equal" : "differs", "-", "-", "-"]
      }
      rows.append(row)
    }
    var text = ""
    if !rows.isEmpty {
      let header = ["tensor", "A -> B", "shape", "rel. error", "SQNR dB", "cosine", "max abs err"]
      text += TextTable.render(header: header, rows: rows, rightAligned: Set(3..<header.count)) + "\n"
    }
    for name in report.onlyInA { text += "only in A: \(name)\n" }
    for name in report.onlyInB { text += "only in B: \(name)\n" }
    for m in report.shapeMismatches {
      text +=
        "shape mismatch: \(m.name): A \(m.aShape.map(String.init).joined(separator: "x")) (\(m.aStorage)) vs B \(m.bShape.map(String.init).joined(separator: "x")) (\(m.bStorage))\n"
    }
    let t = report.totals
    text +=
      "A: \(report.a.path) (\(report.a.format)); B: \(report.b.path) (\(report.b.format))\n"
    text +=
      "\(Format.count(t.compared, "tensor")) compared (\(t.floatTensors) float, \(t.exactTensors) exact), \(t.equal) equal, \(t.differing) \(t.differing == 1 ? "differs" : "differ"); \(t.onlyInA) only in A, \(t.onlyInB) only in B, \(Format.count(t.shapeMismatches, "shape mismatch", plural: "shape mismatches"))\n"
    if let m = t.metrics {
      text +=
        "total: relative error \(Format.metric(m.relativeFrobeniusError)), SQNR \(Format.sqnr(m)) dB, cosine \(Format.cosine(m.cosineSimilarity)), max abs \(Format.metric(m.maxAbsError))\n"
    }
    return text
  }
}
