import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "merge",
      abstract: "Join the parts of a run split with --shard-index/--shard-count into one output.",
      discussion: """
        Every part must come from the same command, options and input, and each index \
        0..<count must be given once; each part's manifest is checked first. The result is \
        byte for byte what one run writes (weights, index, config, manifest); the report is \
        rebuilt from the parts' error sums, so only its timings differ. Files are hard-linked \
        from the parts when they share a file system, else copied.
        """)

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Argument(help: "The part folders, in any order.")
    var parts: [String]

    @Flag(name: .long, help: "Replace the output folder if it exists.")
    var force = false

    @Flag(name: .long, help: "Print the merged report as JSON on standard output.")
    var json = false

    @Flag(name: [.short, .long], help: "Print nothing but errors.")
    var quiet = false

    func run() throws {
      try Diagnostics.reportingErrors {
        let report = try Merger.merge(parts: parts, output: output, force: force)
        if json {
          printResult(report.jsonText())
        } else if !quiet {
          printResult(SummaryTable.render(report))
        }
        try failOnGates(report.gates, quiet: quiet)
      }
    }
  }
}
