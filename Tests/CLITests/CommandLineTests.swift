import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// One command line, the exit status it must give and a fragment its message must hold.
/// In `arguments`, IN is the tiny Llama fixture, OUT the output folder, Q a W4A16
/// quantization of IN and RECIPE a one-stage recipe, all made in a temporary folder.
struct CommandLineCase: Sendable, CustomTestStringConvertible {
  var arguments: [String]
  var status: Int32
  var fragment: String
  var testDescription: String { arguments.joined(separator: " ") }

  init(_ arguments: [String], _ status: Int32, _ fragment: String) {
    self.arguments = arguments
    self.status = status
    self.fragment = fragment
  }

  /// Runs the command in `folder` with the placeholders replaced.
  func run(in folder: TemporaryFolder) throws -> (status: Int32, stdout: String, stderr: String) {
    if arguments.contains("Q") {
      let quantize = try runProcess(
        swiftcompressExecutable, ["quantize", fixture("tiny-llama-f32"), folder.file("q"), "--scheme", "W4A16", "-q"])
      #expect(quantize.status == 0, "\(quantize.stderr)")
    }
    if arguments.contains("RECIPE") {
      _ = FileManager.default.createFile(
        atPath: folder.file("recipe.yaml"), contents: Data("stages:\n  - quantize: {scheme: W8A16}\n".utf8))
    }
    let replaced = arguments.map { argument in
      switch argument {
      case "IN": fixture("tiny-llama-f32")
      case "OUT": folder.file("out")
      case "Q": folder.file("q")
      case "RECIPE": folder.file("recipe.yaml")
      default: argument
      }
    }
    return try runProcess(swiftcompressExecutable, replaced)
  }

  /// Every usage error: a bad value on the command line (negative ones included) or an
  /// option the chosen scheme, method or command cannot use.
  static let usageErrors: [CommandLineCase] = [
    // --shard-index and --shard-count only together.
    .init(["quantize", "IN", "OUT", "--scheme", "W4A16", "--shard-index", "0"], 64, "--shard-index and --shard-count"),
    .init(["prune", "IN", "OUT", "--method", "nm", "--pattern", "2:4", "--shard-count", "2"], 64, "--shard-count"),
    .init(["run", "RECIPE", "IN", "OUT", "--shard-index", "1"], 64, "--shard-index and --shard-count"),
    // A scheme name is a value of the command line.
    .init(["quantize", "IN", "OUT", "--scheme", "W9A16"], 64, "'W9A16'"),
    // Negative numbers are values, and get their range check.
    .init(["quantize", "IN", "OUT", "--scheme", "W4A16", "--group-size", "-5"], 64, "--group-size must be"),
    .init(["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "-0.5"], 64, "-0.5 is outside [0, 1)"),
    .init(["prune", "IN", "OUT", "--method", "structured", "--structure", "mlp", "--ratio", "-0.25"], 64, "--ratio"),
    .init(["prune", "IN", "OUT", "--method", "random", "--sparsity", "0.5", "--seed", "-1"], 64, "--seed"),
    .init(["factorize", "IN", "OUT", "--rank", "-4"], 64, "--rank: -4 must be at least 1"),
    .init(["factorize", "IN", "OUT", "--energy", "-0.5"], 64, "--energy: -0.5 is outside (0, 1]"),
    .init(["factorize", "IN", "OUT", "--max-error", "-0.1"], 64, "--max-error: -0.1 is outside (0, 1]"),
    .init(["factorize", "IN", "OUT", "--ratio", "-0.5"], 64, "--ratio: -0.5 is outside (0, 1]"),
    .init(["factorize", "IN", "OUT", "--budget", "-100"], 64, "--budget: -100"),
    .init(["factorize", "IN", "OUT", "--model-ratio", "-0.5"], 64, "--model-ratio: -0.5 is outside (0, 1]"),
    .init(["factorize", "IN", "OUT", "--method", "rsvd", "--rank", "4", "--oversampling", "-1"], 64, "--oversampling"),
    .init(
      ["factorize", "IN", "OUT", "--method", "rsvd", "--rank", "4", "--power-iterations", "-1"], 64,
      "--power-iterations"),
    .init(["factorize", "IN", "OUT", "--method", "rsvd", "--rank", "4", "--seed", "-1"], 64, "--seed"),
    .init(["factorize", "IN", "OUT", "--rank", "4", "--gate-max-error", "-1"], 64, "--gate-max-error must be"),
    .init(["convert", "IN", "OUT", "--max-error", "-1"], 64, "--max-error must be"),
    .init(["convert", "IN", "OUT", "--min-ratio", "-2"], 64, "--min-ratio must be"),
    .init(["convert", "IN", "OUT", "--max-bpw", "-8"], 64, "--max-bpw must be"),
    .init(["convert", "IN", "OUT", "--jobs", "-2"], 64, "--jobs must be at least 1"),
    .init(["convert", "IN", "OUT", "-j", "-2"], 64, "--jobs must be at least 1"),
    .init(["convert", "IN", "OUT", "--max-shard-size", "-5GB"], 64, "--max-shard-size must be"),
    .init(["convert", "IN", "OUT", "--shard-index", "-1", "--shard-count", "2"], 64, "--shard-index"),
    .init(["convert", "IN", "OUT", "--shard-index", "0", "--shard-count", "-2"], 64, "--shard-count"),
    .init(["run", "RECIPE", "IN", "OUT", "--min-ratio", "-1"], 64, "--min-ratio must be"),
    .init(["diff", "IN", "IN", "--max-error", "-1"], 64, "--max-error must be"),
    // Options the scheme does not use.
    .init(["quantize", "IN", "OUT", "--scheme", "NVFP4A16", "--group-size", "32"], 64, "--group-size does not apply"),
    .init(["quantize", "IN", "OUT", "--scheme", "MXFP4A16", "--group-size", "32"], 64, "--group-size does not apply"),
    .init(
      ["quantize", "IN", "OUT", "--scheme", "FP8_DYNAMIC", "--group-size", "64"], 64, "--group-size does not apply"),
    .init(
      ["quantize", "IN", "OUT", "--scheme", "FP8_BLOCK", "--group-size", "128"], 64, "--group-size does not apply"),
    // Options the pruning method does not use.
    .init(
      ["prune", "IN", "OUT", "--method", "nm", "--pattern", "2:4", "--scope", "row"], 64, "--scope does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--pattern", "2:4", "--scope", "global"], 64,
      "--scope does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "structured", "--structure", "mlp", "--ratio", "0.25", "--scope", "tensor"],
      64,
      "--scope does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "structured", "--structure", "mlp", "--ratio", "0.25", "--sparsity", "0.5"],
      64,
      "--sparsity does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--structure", "mlp"], 64,
      "--structure does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--ratio", "0.5"], 64,
      "--ratio does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--norm", "l1"], 64, "--norm does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--seed", "3"], 64, "--seed does not apply"),
    .init(["prune", "IN", "OUT", "--method", "nm", "--pattern", "2:4", "--seed", "3"], 64, "--seed does not apply"),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--calibration", "stats.safetensors"], 64,
      "--calibration"),
    .init(["prune", "IN", "OUT", "--method", "nm", "--pattern", "2:4", "--sparsity", "0.5"], 64, "--sparsity"),
    .init(
      [
        "prune", "IN", "OUT", "--method", "structured", "--structure", "mlp", "--ratio", "0.25", "--shrink",
        "--sparse-format", "bitmask",
      ], 64, "--sparse-format"),
    // rsvd's options with the other factorization methods.
    .init(["factorize", "IN", "OUT", "--rank", "4", "--oversampling", "5"], 64, "--oversampling does not apply"),
    .init(
      ["factorize", "IN", "OUT", "--method", "lq", "--rank", "4", "--power-iterations", "1"], 64,
      "--power-iterations does not apply"),
    .init(["factorize", "IN", "OUT", "--method", "svd", "--rank", "4", "--seed", "7"], 64, "--seed does not apply"),
    // Error gates where no error is measured.
    .init(["decompress", "Q", "OUT", "--max-error", "0.5"], 64, "--max-error"),
    .init(["decompress", "Q", "OUT", "--gate-max-error", "0.5"], 64, "--gate-max-error"),
    .init(["decompress", "Q", "OUT", "--min-sqnr", "20"], 64, "--min-sqnr"),
    .init(["decompress", "Q", "OUT", "--min-sqnr", "20", "--dry-run"], 64, "--min-sqnr"),
  ]

  /// Combinations that stay valid: each exits 0.
  static let valid: [CommandLineCase] = [
    .init(["quantize", "IN", "OUT", "--scheme", "W4A16", "--group-size", "64", "--dry-run"], 0, ""),
    .init(["quantize", "IN", "OUT", "--scheme", "W8A16", "--group-size", "0", "--dry-run"], 0, ""),
    .init(["quantize", "IN", "OUT", "--scheme", "NVFP4A16", "--scale-search", "mse", "--dry-run"], 0, ""),
    .init(["quantize", "IN", "OUT", "--scheme", "FP8_BLOCK", "--scale-search", "none", "--dry-run"], 0, ""),
    .init(["quantize", "IN", "OUT", "--scheme", "W4A16", "--min-sqnr", "-10", "--dry-run"], 0, ""),
    .init(
      ["prune", "IN", "OUT", "--method", "magnitude", "--sparsity", "0.5", "--scope", "global", "--dry-run"], 0, ""),
    .init(["prune", "IN", "OUT", "--method", "random", "--sparsity", "0.5", "--seed", "3", "--dry-run"], 0, ""),
    .init(["prune", "IN", "OUT", "--method", "magnitude", "--pattern", "2:4", "--dry-run"], 0, ""),
    .init(
      [
        "prune", "IN", "OUT", "--method", "structured", "--structure", "mlp", "--ratio", "0.25", "--norm", "l1",
        "--shrink", "--sparse-format", "dense", "--dry-run",
      ], 0, ""),
    .init(
      [
        "factorize", "IN", "OUT", "--method", "rsvd", "--rank", "4", "--oversampling", "5", "--power-iterations", "1",
        "--seed", "7", "--dry-run",
      ], 0, ""),
    .init(["decompress", "Q", "OUT", "--max-bpw", "64", "--min-ratio", "0.1", "--dry-run"], 0, ""),
    .init(["convert", "IN", "OUT", "--max-error", "0", "--min-sqnr", "-5", "-q"], 0, ""),
  ]
}

@Suite("Usage errors")
struct UsageErrorTests {
  /// Exit 64 with a message naming the option, and nothing written: no output, no
  /// staging folder.
  @Test(arguments: CommandLineCase.usageErrors)
  func usageErrorsExit64(_ usage: CommandLineCase) throws {
    let folder = TemporaryFolder()
    let result = try usage.run(in: folder)
    #expect(result.status == usage.status, "\(result.stderr)")
    #expect(result.stderr.contains(usage.fragment), "missing '\(usage.fragment)' in: \(result.stderr)")
    #expect(result.stdout.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
    #expect(stagingFolders(folder.path).isEmpty)
  }

  @Test(arguments: CommandLineCase.valid)
  func validCombinationsStayValid(_ valid: CommandLineCase) throws {
    let folder = TemporaryFolder()
    let result = try valid.run(in: folder)
    #expect(result.status == 0, "\(result.stderr)")
  }

  /// Every subcommand's help shows defaults as a user writes them, and lists for --dtype
  /// only the dtypes it can write.
  @Test(arguments: [
    "inspect", "verify", "convert", "quantize", "prune", "factorize", "decompress", "run", "diff", "merge",
  ])
  func helpShowsHumanDefaults(_ command: String) throws {
    let help = try swiftcompress(command, "--help")
    #expect(help.status == 0)
    for leak in ["ByteSize(", "Optional(", "nil)", "F8_E4M3", "BOOL"] {
      #expect(!help.stdout.contains(leak), "\(command) --help shows '\(leak)'")
    }
    let defaults: [String: [String]] = [
      "convert": ["default: 5GB"],
      "quantize": ["default: 5GB", "default: 128", "default: none"],
      "prune": ["default: 5GB", "default: dense", "default: l2", "default: 0"],
      "factorize": [
        "default: 5GB", "default: svd", "default: \(FactorizePass.defaultOversampling)",
        "default: \(FactorizePass.defaultPowerIterations)", "default: 0",
      ],
      "decompress": ["default: 5GB"],
      "run": ["default: 5GB"],
    ]
    let flat = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    for text in defaults[command] ?? [] {
      #expect(flat.contains(text), "\(command) --help lacks '\(text)'")
    }
  }
}

@Suite("Messages and output")
struct MessageTests {
  /// Things that are not tensors are not called tensors.
  @Test func messagesNameTheFileFolderOrCheckpoint() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let decompress = try swiftcompress("decompress", model, folder.file("d"))
    #expect(decompress.status == 65)
    #expect(decompress.stderr.contains("checkpoint '\(model)'"), "\(decompress.stderr)")
    #expect(try swiftcompress("quantize", model, folder.file("q"), "--scheme", "W8A16", "-q").status == 0)
    for command in [["quantize", "--scheme", "W8A16"], ["prune", "--method", "magnitude", "--sparsity", "0.5"]] {
      let again = try runProcess(
        swiftcompressExecutable, [command[0], folder.file("q"), folder.file("x")] + command.dropFirst())
      #expect(again.status == 65)
      #expect(again.stderr.contains("checkpoint '\(folder.file("q"))'"), "\(again.stderr)")
    }
    let notPart = try swiftcompress("merge", folder.file("m"), folder.file("q"))
    #expect(notPart.status == 65)
    #expect(notPart.stderr.contains("folder '\(folder.file("q"))'"), "\(notPart.stderr)")
    for result in [decompress, notPart] { #expect(!result.stderr.contains("tensor '"), "\(result.stderr)") }
    // A part that does not exist is an input not found.
    let nowhere = try swiftcompress("merge", folder.file("m"), folder.file("nowhere"))
    #expect(nowhere.status == 66, "\(nowhere.stderr)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("x")))
  }

  /// One tensor, one file, one problem, one pruned weight: singular nouns.
  @Test func oneOfAThingIsSingular() throws {
    let folder = TemporaryFolder()
    let input = folder.file("one.safetensors")
    try writeF32(input, [("layer.weight", [4, 4], (0..<16).map { Float($0) - 7.5 })])
    let convert = try swiftcompress("convert", input, folder.file("c"), "--dtype", "bf16")
    #expect(convert.status == 0, "\(convert.stderr)")
    #expect(convert.stdout.contains("1 of 1 tensor transformed, 0 kept"), "\(convert.stdout)")
    #expect(convert.stdout.contains("(1 weight file)"), "\(convert.stdout)")
    let plan = try swiftcompress("convert", input, folder.file("p"), "--dtype", "bf16", "--dry-run")
    #expect(plan.stdout.contains("plan: 1 of 1 tensor transformed, 0 kept") && plan.stdout.contains(" in 1 file\n"))
    let prune = try swiftcompress(
      "prune", input, folder.file("r"), "--method", "magnitude", "--sparsity", "0.0625")
    #expect(prune.status == 0, "\(prune.stderr)")
    #expect(prune.stdout.contains("1 weight pruned"), "\(prune.stdout)")
    let inspect = try swiftcompress("inspect", input)
    #expect(
      inspect.stdout.contains("\n1 tensor, 16 parameters, 64 bytes (64 B) in 1 file, file\n"), "\(inspect.stdout)")
    #expect(inspect.stdout.contains("F32: 1 tensor, 16 parameters"))
    let verify = try swiftcompress("verify", input)
    #expect(verify.stdout.contains("file, 1 file, 1 tensor\n"), "\(verify.stdout)")
    let broken = try swiftcompress("verify", fixture("malformed/data-past-end.safetensors"))
    #expect(broken.stdout.hasPrefix("1 problem in "), "\(broken.stdout)")
    let diff = try swiftcompress("diff", input, input)
    #expect(diff.stdout.contains("1 tensor compared (1 float, 0 exact), 1 equal, 0 differ;"), "\(diff.stdout)")
    let markdown = try String(contentsOfFile: folder.file("c/" + Report.markdownFileName), encoding: .utf8)
    #expect(markdown.contains("file, 1 file, 1 tensor,") && !markdown.contains("file(s)"), "\(markdown)")
  }

  /// decompress counts bits per weight over the dense weights the compressed tensors
  /// stand for: its "before" is the compressing run's "after", its "after" 32 for F32.
  @Test(arguments: [
    ["quantize", "--scheme", "W4A16"], ["prune", "--method", "nm", "--pattern", "2:4", "--sparse-format", "bitmask"],
    ["factorize", "--rank", "8"],
  ])
  func decompressCountsBitsOverTheDenseWeights(_ command: [String]) throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let compress = try runProcess(
      swiftcompressExecutable, [command[0], model, folder.file("c")] + command.dropFirst() + ["--json"])
    #expect(compress.status == 0, "\(compress.stderr)")
    let compressed = try JSONDecoder().decode(Report.self, from: Data(compress.stdout.utf8))
    let json = try swiftcompress("decompress", folder.file("c"), folder.file("d"), "--dtype", "F32", "--json")
    #expect(json.status == 0, "\(json.stderr)")
    let report = try JSONDecoder().decode(Report.self, from: Data(json.stdout.utf8))
    #expect(report.totals.parameters == compressed.totals.parameters)
    #expect(report.totals.bitsPerWeightBefore == compressed.totals.bitsPerWeightAfter)
    #expect(report.totals.bitsPerWeightAfter == 32)
    let text = try swiftcompress("decompress", folder.file("c"), folder.file("t"), "--dtype", "F32")
    let expected = "\(Format.fixed(compressed.totals.bitsPerWeightAfter, 2)) -> 32.00 bits/weight"
    #expect(text.stdout.contains(expected), "\(text.stdout)")
    let plan = try swiftcompress("decompress", folder.file("c"), folder.file("p"), "--dtype", "F32", "--dry-run")
    #expect(plan.stdout.contains(expected), "\(plan.stdout)")
  }

  /// A part that gets no output shard says so and counts what it wrote.
  @Test func anEmptySplitPartWarns() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")  // one output shard
    let common = ["quantize", model, "--scheme", "W8A16", "--shard-count", "2"]
    let empty = try runProcess(swiftcompressExecutable, common + [folder.file("p1"), "--shard-index", "1"])
    #expect(empty.status == 0, "\(empty.stderr)")
    #expect(empty.stderr.contains("warning: part 1 of 2 has no output shards"), "\(empty.stderr)")
    #expect(empty.stderr.contains("1 output shard for 2 parts"), "\(empty.stderr)")
    #expect(empty.stdout.contains("(0 weight files)"), "\(empty.stdout)")
    let full = try runProcess(swiftcompressExecutable, common + [folder.file("p0"), "--shard-index", "0"])
    #expect(full.status == 0 && full.stderr.isEmpty, "\(full.stderr)")
    #expect(full.stdout.contains("(1 weight file)"), "\(full.stdout)")
    #expect(try swiftcompress("merge", folder.file("m"), folder.file("p0"), folder.file("p1"), "-q").status == 0)
    // Sharded: each part counts only its own shards (5 shards over 3 parts: 2, 2, 1).
    for (index, files) in [(0, "2 weight files"), (2, "1 weight file")] {
      let part = try swiftcompress(
        "quantize", fixture("tiny-llama-sharded"), folder.file("s\(index)"), "--scheme", "W4A16", "--max-shard-size",
        "100KB", "--shard-index", "\(index)", "--shard-count", "3")
      #expect(part.status == 0, "\(part.stderr)")
      #expect(part.stdout.contains("(\(files))"), "\(part.stdout)")
    }
  }
}

@Suite("Colour and terminals")
struct ColourTests {
  /// `command` under a pseudo-terminal (util-linux `script`), with `environment`
  /// prefixed; returns what the terminal received.
  func underTerminal(_ environment: String, _ arguments: [String]) throws -> (status: Int32, text: String) {
    let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
    let result = try runProcess(
      "/usr/bin/script", ["-qec", "\(environment) '\(swiftcompressExecutable)' \(quoted)", "/dev/null"])
    return (result.status, result.stdout)
  }

  @Test func noColorAndDumbTerminalsGetNoEscapes() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { return }
    let folder = TemporaryFolder()
    let missing = ["inspect", folder.file("missing")]
    let coloured = try underTerminal("env -u NO_COLOR TERM=xterm", missing)
    #expect(coloured.text.contains("\u{1B}[1;31merror:"), "\(coloured.text)")
    let empty = try underTerminal("NO_COLOR= TERM=xterm", missing)  // empty: not set, says no-color.org
    #expect(empty.text.contains("\u{1B}[1;31merror:"), "\(empty.text)")
    for environment in ["NO_COLOR=1 TERM=xterm", "env -u NO_COLOR TERM=dumb"] {
      let plain = try underTerminal(environment, missing)
      #expect(plain.text.contains("error: ") && !plain.text.contains("\u{1B}"), "\(environment): \(plain.text)")
    }
    let model = fixture("tiny-llama-f32")
    // NO_COLOR keeps the progress line, which is not colour; a dumb terminal gets none.
    let noColor = try underTerminal("NO_COLOR=1 TERM=xterm", ["convert", model, folder.file("a"), "--dtype", "bf16"])
    #expect(noColor.status == 0)
    #expect(noColor.text.contains("[21/21]") && noColor.text.contains("\u{1B}[2K"))
    let dumb = try underTerminal("env -u NO_COLOR TERM=dumb", ["convert", model, folder.file("b"), "--dtype", "bf16"])
    #expect(dumb.status == 0)
    #expect(!dumb.text.contains("\u{1B}") && !dumb.text.contains("[21/21]"), "\(dumb.text)")
    #expect(dumb.text.contains("15 of 21 tensors transformed"))
  }
}
