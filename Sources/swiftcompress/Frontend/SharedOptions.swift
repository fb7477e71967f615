import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

/// A byte count written as 5GB (10^9), 500MB, 2GiB (2^30), 64KiB or plain bytes. A size
/// that is not positive parses, so that `validate()` can say what is wrong with it.
struct ByteSize: ExpressibleByArgument, Sendable {
  var bytes: Int

  static let units: [(suffix: String, scale: Int)] = [
    ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1),
  ]

  init(bytes: Int) {
    self.bytes = bytes
  }

  init?(argument: String) {
    let text = argument.trimmingCharacters(in: .whitespaces).uppercased()
    for (suffix, scale) in Self.units where text.hasSuffix(suffix.uppercased()) {
      guard let value = Double(text.dropLast(suffix.count)), abs(value * Double(scale)) < 9e18 else { return nil }
      bytes = Int(value * Double(scale))
      return
    }
    guard let value = Int(text) else { return nil }
    bytes = value
  }

  /// The size as a user writes it: in the largest unit it is a whole number of (5GB, 2GiB).
  var text: String {
    guard bytes != 0, let unit = Self.units.first(where: { bytes % $0.scale == 0 }), unit.scale > 1 else {
      return "\(bytes)"
    }
    return "\(bytes / unit.scale)\(unit.suffix)"
  }

  /// How `--help` shows the default.
  var defaultValueDescription: String { text }
}

/// `--ignore`, shared by the passes that change linear weights (quantize, prune, factorize).
struct IgnoreOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .singleValue,
    help: ArgumentHelp(
      "A module to leave as it is: an exact name, or re:<regex> matched from the start (repeatable; default lm_head).",
      valueName: "module"))
  var ignore: [String] = []

  /// The modules to leave alone, nil when none is given: then the pass's default
  /// (`defaultIgnore` of its configuration, lm_head, as the help says).
  var modules: [String]? { ignore.isEmpty ? nil : ignore }
}

/// `--min-sqnr`, `--max-bpw`, `--min-ratio`: the gates every compressing command takes.
/// Numbers may be negative (`--min-sqnr -5`), so values starting with '-' are values.
struct SizeAndSQNRGates: ParsableArguments {
  @Option(
    name: .customLong("min-sqnr"), parsing: .unconditional,
    help: "Fail (exit 3) when the total SQNR is below this many dB.")
  var minSQNR: Double?

  @Option(
    name: .customLong("max-bpw"), parsing: .unconditional,
    help: "Fail (exit 3) when the bits per weight after are above this.")
  var maxBitsPerWeight: Double?

  @Option(name: .long, parsing: .unconditional, help: "Fail (exit 3) when bytes before / bytes after is below this.")
  var minRatio: Double?

  func validate() throws {
    if let minSQNR, !minSQNR.isFinite {
      throw ValidationError("--min-sqnr must be a number of dB, not \(Format.metric(minSQNR)).")
    }
    for (option, value) in [("--max-bpw", maxBitsPerWeight), ("--min-ratio", minRatio)] {
      if let value, !(value.isFinite && value > 0) {
        throw ValidationError("\(option) must be a positive number, not \(Format.metric(value)).")
      }
    }
  }

  func gates(maxError: Double?) -> QualityGates {
    QualityGates(maxError: maxError, minSQNR: minSQNR, maxBitsPerWeight: maxBitsPerWeight, minRatio: minRatio)
  }
}

/// A command's quality gates, and which of those given need a measured error.
protocol QualityGateOptions {
  var gates: QualityGates { get }
  /// The options given that gate on the error (`--max-error`, `--min-sqnr`), as typed.
  var errorGateOptions: [String] { get }
}

extension QualityGateOptions {
  /// Refuses (exit 64, before anything is read or written) error gates for a pass that
  /// measures no error, which could only fail.
  func requireMeasurable(by pass: any CompressionPass, command: String) throws(SwiftCompressError) {
    let options = errorGateOptions
    guard !pass.measuresError, !options.isEmpty else { return }
    throw .invalidOption(
      option: options.joined(separator: " and "),
      reason:
        "\(command) does not measure an error (it has no reference to compare its output with), so \(options.count == 1 ? "this gate" : "these gates") cannot be checked; gate on size with --max-bpw or --min-ratio, or compare the output with the original: 'swiftcompress diff ORIGINAL OUTPUT --max-error E'"
    )
  }
}

/// Checks an error limit given as `option`.
private func validateErrorLimit(_ option: String, _ value: Double?) throws {
  if let value, !(value.isFinite && value >= 0) {
    throw ValidationError("\(option) must be a number >= 0, not \(Format.metric(value)).")
  }
}

/// `--max-error` and the other gates: limits for Makefiles and CI.
struct GateOptions: ParsableArguments, QualityGateOptions {
  @Option(
    name: .customLong("max-error"), parsing: .unconditional,
    help: "Fail (exit 3) when the total relative Frobenius error is above this.")
  var maxError: Double?

  @Option(
    name: .customLong("gate-max-error"), parsing: .unconditional,
    help: "The same as --max-error (the name factorize uses for it).")
  var gateMaxError: Double?

  @OptionGroup var others: SizeAndSQNRGates

  func validate() throws {
    if maxError != nil && gateMaxError != nil {
      throw ValidationError("--max-error and --gate-max-error are the same gate: give one of them.")
    }
    try validateErrorLimit("--max-error", maxError)
    try validateErrorLimit("--gate-max-error", gateMaxError)
  }

  var gates: QualityGates { others.gates(maxError: maxError ?? gateMaxError) }

  var errorGateOptions: [String] {
    [
      maxError.map { _ in "--max-error" }, gateMaxError.map { _ in "--gate-max-error" },
      others.minSQNR.map { _ in "--min-sqnr" },
    ].compactMap { $0 }
  }
}

/// The gates of `factorize`, whose `--max-error` is a rank rule: its error gate is
/// `--gate-max-error`.
struct FactorizeGateOptions: ParsableArguments, QualityGateOptions {
  @Option(
    name: .customLong("gate-max-error"), parsing: .unconditional,
    help: "Fail (exit 3) when the total relative Frobenius error is above this.")
  var maxError: Double?

  @OptionGroup var others: SizeAndSQNRGates

  func validate() throws {
    try validateErrorLimit("--gate-max-error", maxError)
  }

  var gates: QualityGates { others.gates(maxError: maxError) }

  var errorGateOptions: [String] {
    [maxError.map { _ in "--gate-max-error" }, others.minSQNR.map { _ in "--min-sqnr" }].compactMap { $0 }
  }
}

/// How a run writes and talks: shared by `run` and every single-pass command.
struct OutputOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .unconditional,
    help: ArgumentHelp("Largest output shard (e.g. 5GB, 500MB, 2GiB).", valueName: "size"))
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
    name: [.short, .long], parsing: .unconditional,
    help: "Worker threads for the data-parallel loops (default: one per core). The output bytes do not depend on it.")
  var jobs: Int?

  @Option(
    name: .long, parsing: .unconditional,
    help:
      "Write only part i of the output (0-based; with --shard-count): the output shards s with s % count == i. Join the parts with 'swiftcompress merge'."
  )
  var shardIndex: Int?

  @Option(
    name: .long, parsing: .unconditional, help: "The number of parts the output is split into (with --shard-index).")
  var shardCount: Int?

  /// The split, or nil without --shard-index/--shard-count.
  func split() throws -> ShardSplit? {
    switch (shardIndex, shardCount) {
    case (nil, nil): return nil
    case (let index?, let count?):
      do throws(SwiftCompressError) {
        return try ShardSplit(index: index, count: count)
      } catch {
        throw ValidationError(error.errorDescription ?? "\(error)")
      }
    default: throw ValidationError("--shard-index and --shard-count go together: give both or neither.")
    }
  }

  func validate() throws {
    if quiet && verbose { throw ValidationError("--quiet and --verbose cannot be used together.") }
    if dryRun && explain { throw ValidationError("--dry-run and --explain cannot be used together.") }
    if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1, not \(jobs).") }
    if maxShardSize.bytes <= 0 {
      throw ValidationError("--max-shard-size must be positive, not \(maxShardSize.text).")
    }
    _ = try split()
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
    input: String, output path: String, command: String, pass: any CompressionPass,
    gates options: some QualityGateOptions
  ) throws -> CompressionOptions {
    let selection = try selection()
    try options.requireMeasurable(by: pass, command: command)
    let gates = options.gates
    try gates.validate()
    var options = CompressionOptions(
      input: input, output: path, selection: selection, maxShardSize: output.maxShardSize.bytes, force: output.force,
      command: command, gates: gates, recipe: Recipe.singleStage(pass, selection: selection, gates: gates))
    options.split = try output.split()
    options.strict = output.strict
    options.jobs = output.jobs
    return options
  }
}

extension DType: ExpressibleByArgument {
  public init?(argument: String) {
    let upper = argument.uppercased()
    guard let value = DType(rawValue: upper) else { return nil }
    self = value
  }

  /// The dtypes `--dtype` can write, for `--help` and completion.
  public static var allValueStrings: [String] { Float32Conversion.encodableDTypes.map(\.rawValue) }
}
