import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

/// A byte count written as 5GB (10^9), 500MB, 2GiB (2^30), 64KiB or plain bytes.
struct ByteSize: ExpressibleByArgument, Sendable {
  var bytes: Int

  init(bytes: Int) {
    self.bytes = bytes
  }

  init?(argument: String) {
    let text = argument.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Int)] = [
      ("TIB", 1 << 40), ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10),
      ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1),
    ]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
      guard let value = Double(text.dropLast(suffix.count)), value > 0, value * Double(scale) < 9e18 else {
        return nil
      }
      bytes = Int(value * Double(scale))
      return
    }
    guard let value = Int(text), value > 0 else { return nil }
    bytes = value
  }

  static var defaultValueDescription: String { "5GB" }
}

/// `--ignore`, shared by the passes that change linear weights (quantize, prune, factorize).
struct IgnoreOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .singleValue,
    help: ArgumentHelp(
      "A module to leave as it is: an exact name, or re:<regex> matched from the start (repeatable; default lm_head).",
      valueName: "module"))
  var ignore: [String] = []

  /// The modules to leave alone: those given, or lm_head.
  var modules: [String] { ignore.isEmpty ? ["lm_head"] : ignore }
}

/// Options every compressing subcommand shares.
struct PipelineOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .singleValue,
    help: ArgumentHelp(
      "Process only tensors whose name matches this regular expression (repeatable). An explicit match overrides the default of leaving 1-D tensors and embeddings untouched.",
      valueName: "regex"))
  var include: [String] = []

  @Option(
    name: .long, parsing: .singleValue,
    help: ArgumentHelp(
      "Leave tensors whose name matches this regular expression untouched (repeatable).", valueName: "regex"))
  var exclude: [String] = []

  @Option(name: .long, help: ArgumentHelp("Largest output shard (e.g. 5GB, 500MB, 2GiB).", valueName: "size"))
  var maxShardSize: ByteSize = ByteSize(bytes: CompressionOptions.defaultMaxShardSize)

  @Flag(name: .long, help: "Replace the output folder if it exists.")
  var force = false

  @Flag(name: .long, help: "Print the report as JSON on standard output.")
  var json = false

  @Flag(name: [.short, .long], help: "Print nothing but errors.")
  var quiet = false

  /// The compiled selection; a bad pattern is a usage error (exit 64).
  func selection() throws(SwiftCompressError) -> TensorSelection {
    try TensorSelection(include: include, exclude: exclude)
  }
}

extension DType: ExpressibleByArgument {
  public init?(argument: String) {
    let upper = argument.uppercased()
    guard let value = DType(rawValue: upper) else { return nil }
    self = value
  }
}
