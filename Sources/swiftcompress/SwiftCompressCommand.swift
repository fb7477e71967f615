import ArgumentParser
import SwiftCompressKit

@main
struct SwiftCompressCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "swiftcompress",
    abstract: "Compress neural-network checkpoints in safetensors format.",
    discussion: """
      Exit codes: 0 success, 3 a quality gate failed (the output and report are written) or diff \
      --max-error exceeded, 64 usage error, 65 invalid input data, 66 input not found, 73 cannot \
      create output, 130/143 interrupted by SIGINT/SIGTERM (the unfinished output is removed), \
      1 anything else.
      """,
    version: SwiftCompressVersion.current,
    subcommands: [
      Inspect.self, Verify.self, Convert.self, Quantize.self, Analyze.self, Prune.self, Factorize.self, Decompress.self,
      Rotate.self,
      Run.self, Diff.self, Merge.self, Evaluate.self, Calibrate.self, Tokenize.self,
    ]
  )

  /// Installs the signal handling (cleanup of unfinished outputs on SIGINT and
  /// SIGTERM, SIGXFSZ ignored) before any thread starts, then runs the command.
  static func main() {
    ProcessSignals.install()
    main(nil)
  }
}
