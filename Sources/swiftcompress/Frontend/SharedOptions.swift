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

/// `--min-sqnr`, `--max-bpw`, `--min-ratio`: the gates every compressing command takes.
struct SizeAndSQNRGates: ParsableArguments {
  @Option(name: .customLong("min-sqnr"), help: "Fail (exit 3) when the total SQNR is below this many dB.")
  var minSQNR: Double?

  @Option(name: .customLong("max-bpw"), help: "Fail (exit 3) when the bits per weight after are above this.")
  var maxBitsPerWeight: Double?

  @Option(name: .long, help: "Fail (exit 3) when bytes before / bytes after is below this.")
  var minRatio: Double?

  func gates(maxError: Double?) -> QualityGates {
    QualityGates(maxError: maxError, minSQNR: minSQNR, maxBitsPerWeight: maxBitsPerWeight, minRatio: minRatio)
  }
}

/// `--max-error` and the other gates: limits for Makefiles and CI.
struct GateOptions: ParsableArguments {
  @Option(
    name: [.customLong("max-error"), .customLong("gate-max-error")],
    help: "Fail (exit 3) when the total relative Frobenius error is above this.")
  var maxError: Double?

  @OptionGroup var others: SizeAndSQNRGates

  var gates: QualityGates { others.gates(maxError: maxError) }
}

/// The gates of `factorize`, whose `--max-error` is a rank rule: its error gate is
/// `--gate-max-error`.
struct FactorizeGateOptions: ParsableArguments {
  @Option(
    name: .customLong("gate-max-error"), help: "Fail (exit 3) when the total relative Frobenius error is above this.")
  var maxError: Double?

  @OptionGroup var others: SizeAndSQNRGates

  var gates: QualityGates { others.gates(maxError: maxError) }
}

/// How a run writes and talks: shared by `run` and every single-pass command.
struct OutputOptions: ParsableArguments {
  @Option(name: .long, help: ArgumentHelp("Largest output shard (e.g. 5GB, 500MB, 2GiB).", valueName: "size"))
  var maxShardSize: ByteSize = ByteSize(bytes: CompressionOptions.defaultMaxShardSize)

  @Flag(name: .long, help: "Replace the output folder if it exists.")
  var force = false

  @Flag(
    name: .long, help: "Print the plan (per tensor: outputs, dtypes, shapes, bytes, bits/weight) and write nothing.")
  var dryRun = false

  @Flag(
    name: .long,
    help: "Print, for every tensor, which selection, stage and override matched or not and why; write nothing.")
  var explain = false

  @Flag(name: .long, help: "Print the report (or with --dry-run the plan) as JSON on standard output.")
  var json = false

  @Flag(name: [.short, .long], help: "Print nothing but errors.")
  var quiet = false

  @Flag(
    name: .long,
    help:
      "Treat every warning (a selection, target or override that matches nothing, an input without config.json, ...) as an error: exit 65 before writing anything."
  )
  var strict = false

  @Flag(name: [.short, .long], help: "Print a line per tensor on standard error as it is done.")
  var verbose = false

  @Option(
    name: [.short, .long],
    help: "Worker threads for the data-parallel loops (default: one per core). The output bytes do not depend on it.")
  var jobs: Int?

  @Option(
    name: .long,
    help:
      "Write only part i of the output (0-based; with --shard-count): the output shards s with s % count == i. Join the parts with 'swiftcompress merge'."
  )
  var shardIndex: Int?

  @Option(name: .long, help: "The number of parts the output is split into (with --shard-index).")
  var shardCount: Int?

  /// The split, or nil without --shard-index/--shard-count.
  func split() throws -> ShardSplit? {
    switch (shardIndex, shardCount) {
    case (nil, nil): return nil
    case (let index?, let count?): return try ShardSplit(index: index, count: count)
    default: throw ValidationError("--shard-index and --shard-count go together.")
    }
  }

  func validate() throws {
    if quiet && verbose { throw ValidationError("--quiet and --verbose cannot be used together.") }
    if dryRun && explain { throw ValidationError("--dry-run and --explain cannot be used together.") }
    if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1.") }
  }
}

/// Options every single-pass compressing subcommand shares.
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

  @OptionGroup var output: OutputOptions

  /// The compiled selection; a bad pattern is a usage error (exit 64).
  func selection() throws(SwiftCompressError) -> TensorSelection {
    try TensorSelection(include: include, exclude: exclude)
  }

  /// The run's options for `command`, with the gates and, for passes recipes know,
  /// the effective one-stage recipe.
  func compression(
    input: String, output path: String, command: String, pass: any CompressionPass, gates: QualityGates
  ) throws -> CompressionOptions {
    let selection = try selection()
    try gates.validate()
    var options = CompressionOptions(
      input: input, output: path, selection: selection, maxShardSize: output.maxShardSize.bytes, force: output.force,
      command: command, gates: gates, recipe: Recipe.singleStage(pass, selection: selection, gates: gates))
    options.split = try output.split()
    options.strict = output.strict
    return options
  }
}

extension DType: ExpressibleByArgument {
  public init?(argument: String) {
    let upper = argument.uppercased()
    guard let value = DType(rawValue: upper) else { return nil }
    self = value
  }
}
