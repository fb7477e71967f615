import ArgumentParser
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Check a checkpoint against every rule of the format and for NaN or infinite weights.",
      discussion: "Exits 0 when the checkpoint is clean; otherwise lists every problem found and exits 65.")

    @Argument(help: "A .safetensors file, or a checkpoint folder.")
    var path: String

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func run() throws {
      try Diagnostics.reportingErrors {
        let report = try VerificationReport.verify(path)
        if json {
          printResult(Format.json(report))
        } else {
          for warning in report.warnings { Diagnostics.warning(warning) }
          if report.valid {
            printResult(
              "ok: \(path): \(report.layout ?? "checkpoint"), \(report.files) file(s), \(report.tensors) tensors\n")
          } else {
            printResult("\(report.problems.count) problem(s) in \(path):\n")
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
