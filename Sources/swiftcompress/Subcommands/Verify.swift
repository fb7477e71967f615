import ArgumentParser
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "verify",
      abstract: "Check a checkpoint against every rule of the format and for NaN or infinite weights.",
      discussion: "Exits 0 when the checkpoint is clean; otherwise lists every problem found and exits 65.")

    @Argument(help: "A .safetensors file, or a checkpoint folder.")
    var path: String

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    @Option(
      name: .long, parsing: .unconditional,
      help: ArgumentHelp(
        "Also check that every linear weight (2-D .weight, not embeddings or lm_head, or a bitmask-stored one) keeps at most N of every M consecutive values.",
        valueName: "N:M"))
    var pattern: NMPattern?

    func run() throws {
      try Diagnostics.reportingErrors {
        if let pattern {
          guard pattern.n >= 1, pattern.m <= 32, pattern.n < pattern.m else {
            throw SwiftCompressError.invalidOption(
              option: "--pattern", reason: "'\(pattern)' must have 1 <= N < M <= 32 (for example 2:4)")
          }
        }
        let report = try VerificationReport.verify(path, pattern: pattern)
        if json {
          printResult(Format.json(report))
        } else {
          for warning in report.warnings { Diagnostics.warning(warning) }
          for note in report.notes { Diagnostics.note(note) }
          if report.valid {
            printResult(
              "ok: \(path): \(report.layout ?? "checkpoint"), \(Format.count(report.files, "file")), \(Format.count(report.tensors, "tensor"))\n"
            )
            if let pattern = report.pattern {
              printResult(
                "ok: \(pattern) sparsity holds in all \(Format.count(report.patternTensors ?? 0, "linear weight"))\n")
            }
          } else {
            printResult("\(Format.count(report.problems.count, "problem")) in \(path):\n")
            for problem in report.problems {
              printResult("- \(problem)\n  \(problem.rule.advice)\n")
            }
          }
        }
        if !report.valid { throw ExitCode(ExitStatus.invalidData) }
      }
    }
  }
}
