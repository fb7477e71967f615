import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs the built `swiftcompress` executable.
func swiftcompress(_ arguments: String...) throws -> (status: Int32, stdout: String, stderr: String) {
  try runProcess(swiftcompressExecutable, arguments)
}

struct MalformedFixture: Sendable, CustomTestStringConvertible {
  var file: String
  var rule: String
  var testDescription: String { file }

  static let all: [MalformedFixture] = {
    guard let data = FileManager.default.contents(atPath: fixture("malformed/expected.json")),
      let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
    else { return [] }
    return list.map { MalformedFixture(file: $0["file"] as! String, rule: $0["rule"] as! String) }
  }()
}

@Suite("Command line")
struct CLITests {
  @Test func theExecutableIsBuilt() {
    #expect(FileManager.default.isExecutableFile(atPath: swiftcompressExecutable), "\(swiftcompressExecutable)")
  }

  /// OpenBLAS and LAPACKE are loaded by the first matrix call, not at start: quantize
  /// and convert never load them (the dynamic loader's own log, LD_DEBUG=libs, names
  /// every library it opens), factorize does, and computes its factors with them.
  @Test func blasIsLoadedOnlyByCommandsThatUseIt() throws {
    let folder = TemporaryFolder()
    func libraries(_ command: String) throws -> String {
      let result = try runProcess(
        "/bin/sh", ["-c", "LD_DEBUG=libs '\(swiftcompressExecutable)' \(command) --quiet"])
      #expect(result.status == 0, "\(command): \(result.stderr)")
      return result.stderr
    }
    let input = fixture("tiny-llama-f32")
    for command in [
      "quantize '\(input)' '\(folder.file("q"))' --scheme W4A16", "convert '\(input)' '\(folder.file("c"))'",
    ] {
      let log = try libraries(command)
      #expect(log.contains("libc.so"), "\(command): no loader log")
      #expect(!log.contains("libopenblas"), "\(command)")
      #expect(!log.contains("liblapacke"), "\(command)")
    }
    let log = try libraries("factorize '\(input)' '\(folder.file("f"))' --rank 8")
    #expect(log.contains("libopenblas.so.0"))
    #expect(log.contains("liblapacke.so.3"))
  }

  /// Every malformed fixture: exit 65 from inspect, verify and convert, a message on
  /// stderr naming the rule, nothing on stdout but verify's problem list, no crash.
  @Test(arguments: MalformedFixture.all)
  func malformedInputExits65WithItsRule(_ malformed: MalformedFixture) throws {
    let path = fixture("malformed/" + malformed.file)
    let inspect = try swiftcompress("inspect", path)
    #expect(inspect.status == 65)
    #expect(inspect.stderr.contains(malformed.rule))
    #expect(inspect.stdout.isEmpty)

    let verify = try swiftcompress("verify", path)
    #expect(verify.status == 65)
    #expect(verify.stdout.contains(malformed.rule))

    let folder = TemporaryFolder()
    let convert = try swiftcompress("convert", path, folder.file("out"))
    #expect(convert.status == 65)
    #expect(convert.stderr.contains(malformed.rule))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
  }

  @Test func verifyListsEveryProblemAsJSON() throws {
    let folder = TemporaryFolder()
    let path = folder.file("two.safetensors")
    writeRawSafetensors(
      path,
      header:
        #"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,8]}}"#,
      data: [UInt8](repeating: 0, count: 8))
    let result = try swiftcompress("verify", path, "--json")
    #expect(result.status == 65)
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
    #expect(json["valid"] as? Bool == false)
    let rules = (json["problems"] as! [[String: Any]]).map { $0["rule"] as! String }
    #expect(rules == ["unknown-dtype", "size-mismatch"])
  }

  @Test func verifyReportsNonFiniteWeights() throws {
    let folder = TemporaryFolder()
    let path = folder.file("nan.safetensors")
    let values: [Float] = [1, .nan, 3, .infinity]
    let writer = try SafeTensorsWriter(
      destination: path, tensors: [PlannedTensor(name: "w", dtype: .f32, shape: [2, 2])])
    try values.withUnsafeBytes { try writer.write("w", $0) }
    try writer.finish()
    let result = try swiftcompress("verify", path)
    #expect(result.status == 65)
    #expect(result.stdout.contains("non-finite-values") && result.stdout.contains("1 NaN and 1 infinite"))
  }

  @Test func cleanCheckpointsVerify() throws {
    for name in [
      "tiny-llama-f32", "tiny-llama-f16", "tiny-llama-bf16", "tiny-llama-sharded", "tiny-bert",
      "tiny-bert/model.safetensors",
    ] {
      let result = try swiftcompress("verify", fixture(name))
      #expect(result.status == 0, "\(name): \(result.stdout)\(result.stderr)")
      #expect(result.stdout.hasPrefix("ok: "))
    }
  }

  @Test func inspectPrintsATableAndJSONWithStatistics() throws {
    let table = try swiftcompress("inspect", fixture("tiny-llama-sharded"), "--stats")
    #expect(table.status == 0)
    #expect(table.stdout.contains("model.layers.1.mlp.down_proj.weight"))
    #expect(table.stdout.contains("21 tensors, 524928 parameters, 1049856 bytes"))
    #expect(table.stderr.isEmpty)

    let result = try swiftcompress("inspect", fixture("tiny-bert"), "--stats", "--json")
    #expect(result.status == 0)
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
    let tensors = json["tensors"] as! [[String: Any]]
    let ids = try #require(tensors.first { $0["name"] as? String == "embeddings.position_ids" })
    #expect(ids["dtype"] as? String == "I64")
    let stats = ids["stats"] as! [String: Any]
    // position_ids hold 0...127: mean 63.5, population std sqrt((128^2 - 1) / 12).
    #expect(stats["mean"] as? Double == 63.5)
    #expect(abs((stats["std"] as! Double) - ((128.0 * 128 - 1) / 12).squareRoot()) < 1e-9)
    #expect(stats["min"] as? Double == 0 && stats["max"] as? Double == 127)
    #expect(abs((stats["zero_fraction"] as! Double) - 1.0 / 128) < 1e-15)
  }

  @Test func exitCodesFollowTheDocumentedTable() throws {
    let folder = TemporaryFolder()
    #expect(try swiftcompress("inspect", folder.file("missing")).status == 66)
    #expect(try swiftcompress("inspect", folder.path).status == 66)  // a folder without weights
    #expect(try swiftcompress("convert", fixture("tiny-llama-f32")).status == 64)  // missing argument
    #expect(
      try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"), "--max-shard-size", "lots").status == 64
    )
    #expect(try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"), "--include", "([").status == 64)
    #expect(
      try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"), "--dtype", "F8_E4M3").status == 64)
    #expect(try swiftcompress("nonsense").status == 64)
    #expect(try swiftcompress("convert", fixture("tiny-llama-f32"), fixture("tiny-llama-f32") + "/inside").status == 73)
    #expect(try swiftcompress("convert", fixture("tiny-llama-f32"), "/nonexistent-parent/out").status == 73)
    let ok = try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"), "--quiet")
    #expect(ok.status == 0 && ok.stdout.isEmpty && ok.stderr.isEmpty)
    let again = try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"))
    #expect(again.status == 73)
    #expect(again.stderr.contains("--force"))
    #expect(try swiftcompress("convert", fixture("tiny-llama-f32"), folder.file("o"), "--force", "--quiet").status == 0)
  }

  /// The BF16 written by `convert --dtype bf16` equals ml_dtypes' rounding of the input,
  /// read back by Python safetensors; kept tensors are byte-identical.
  @Test func convertedCheckpointIsReadByPythonWithTheReferenceValues() throws {
    let python = try #require(referencePython, "the reference Python is missing: run `make venv`")
    let folder = TemporaryFolder()
    let out = folder.file("bf16")
    let run = try swiftcompress("convert", fixture("tiny-llama-f32"), out, "--dtype", "bf16", "--json")
    #expect(run.status == 0, "\(run.stderr)")
    let report = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
    #expect((report["totals"] as! [String: Any])["transformed"] as? Int == 15)
    let check = try runProcess(
      python,
      [
        repositoryRoot + "/Tests/Interop/check_safetensors.py", "cast", out + "/model.safetensors",
        fixture("tiny-llama-f32/model.safetensors"), "BF16",
      ])
    #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    // Side files are copied unchanged.
    #expect(
      FileManager.default.contentsEqual(atPath: out + "/config.json", andPath: fixture("tiny-llama-f32/config.json")))
  }

  @Test func progressIsSilentWhenStderrIsNotATerminal() throws {
    let folder = TemporaryFolder()
    let result = try swiftcompress("convert", fixture("tiny-llama-sharded"), folder.file("o"), "--dtype", "f32")
    #expect(result.status == 0)
    #expect(result.stderr.isEmpty)
    #expect(result.stdout.contains("transformed"))
  }
}

@Suite("Terminal output")
struct TerminalTests {
  /// Under a pseudo-terminal (util-linux `script`), progress is drawn on stderr.
  @Test func progressIsDrawnOnATerminal() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { return }
    let folder = TemporaryFolder()
    let command =
      "TERM=xterm '\(swiftcompressExecutable)' convert '\(fixture("tiny-llama-f32"))' '\(folder.file("o"))' --dtype bf16"
    let result = try runProcess("/usr/bin/script", ["-qec", command, "/dev/null"])
    #expect(result.status == 0)
    #expect(result.stdout.contains("[21/21]"))  // the final progress line
    #expect(result.stdout.contains("\u{1B}[2K"))  // drawn and cleared in place
  }
}

@Suite("quantize command")
struct QuantizeCommandTests {
  @Test func quantizeWritesTheReferenceLayoutAndRejectsUnknownSchemes() throws {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let run = try swiftcompress(
      "quantize", fixture("tiny-llama-f32"), out, "--scheme", "w8a16", "--ignore", "lm_head", "--ignore",
      "re:.*embed_tokens.*", "--quiet")
    #expect(run.status == 0, "\(run.stderr)")
    #expect(
      FileManager.default.contentsEqual(
        atPath: out + "/config.json", andPath: fixture("golden/quantization/tiny-llama-f32/W8A16/config.json")))
    let unknown = try swiftcompress("quantize", fixture("tiny-llama-f32"), folder.file("x"), "--scheme", "W7A16")
    #expect(unknown.status == 64)  // a bad value on the command line is a usage error
    #expect(unknown.stderr.contains("W7A16") && unknown.stderr.contains("W4A16_ASYM"))  // the known schemes are listed
    #expect(!FileManager.default.fileExists(atPath: folder.file("x")))
    let badGroup = try swiftcompress(
      "quantize", fixture("tiny-llama-f32"), folder.file("y"), "--scheme", "W4A16", "--group-size", "256")
    #expect(badGroup.status == 65)
    #expect(badGroup.stderr.contains("group size 256"))
  }
}

@Suite("prune command")
struct PruneCommandTests {
  @Test func pruneThenVerifyThePattern() throws {
    let folder = TemporaryFolder()
    let out = folder.file("p")
    let run = try swiftcompress(
      "prune", fixture("tiny-llama-bf16"), out, "--method", "nm", "--pattern", "2:4", "--json")
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("\"pattern_holds\" : true"))
    #expect(try swiftcompress("verify", out, "--pattern", "2:4").status == 0)
    let wrong = try swiftcompress("verify", out, "--pattern", "1:4")
    #expect(wrong.status == 65)
    #expect(wrong.stdout.contains("sparsity-pattern") && wrong.stdout.contains("mlp.down_proj.weight"))
    #expect(try swiftcompress("verify", fixture("tiny-llama-bf16"), "--pattern", "2:4").status == 65)
    #expect(try swiftcompress("verify", out, "--pattern", "4:4").status == 64)
    // The bitmask form is checked from its masks.
    let sparse = folder.file("s")
    #expect(
      try swiftcompress(
        "prune", fixture("tiny-llama-bf16"), sparse, "--method", "nm", "--pattern", "2:4", "--sparse-format", "bitmask",
        "-q"
      ).status == 0)
    #expect(try swiftcompress("verify", sparse, "--pattern", "2:4").status == 0)
  }

  @Test func badOptionsExit64AndBadDataExit65WithNothingWritten() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let cases: [([String], Int32, String)] = [
      (["--method", "magnitude", "--sparsity", "1.2"], 64, "outside [0, 1)"),
      (["--method", "magnitude"], 64, "needs a sparsity"),
      (["--method", "nm", "--pattern", "3:2"], 64, "1 <= N < M <= 32"),
      (["--method", "nm", "--pattern", "2:5"], 65, "M = 5"),
      (["--method", "wanda", "--sparsity", "0.5"], 64, "--calibration"),
      (
        ["--method", "wanda", "--sparsity", "0.5", "--calibration", fixture("tiny-bert/model.safetensors")], 65,
        "no statistics for this layer"
      ),
      (["--method", "structured", "--structure", "mlp", "--ratio", "1"], 64, "--ratio"),
      (["--method", "structured", "--structure", "rows", "--ratio", "0.5", "--shrink"], 64, "--shrink"),
    ]
    for (index, (arguments, status, message)) in cases.enumerated() {
      let out = folder.file("o\(index)")
      let result = try runProcess(swiftcompressExecutable, ["prune", model, out] + arguments)
      #expect(result.status == status, "\(arguments): \(result.stderr)")
      #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
      #expect(!FileManager.default.fileExists(atPath: out))
    }
  }
}

extension PruneCommandTests {
  /// The run's summary line, --dry-run and --explain state structured pruning's units per
  /// model (and per layer), named for what they are. The numbers come from config.json
  /// and the documented rule, floor(ratio x units) in every layer.
  @Test func structuredPruningStatesUnitsPerModel() throws {
    func config(_ model: String) throws -> [String: Int] {
      let data = try Data(contentsOf: URL(fileURLWithPath: fixture(model + "/config.json")))
      let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
      return object.compactMapValues { $0 as? Int }
    }
    func floor(_ ratio: Double, _ units: Int) -> Int { Int((ratio * Double(units)).rounded(.down)) }
    let llama = try config("tiny-llama-f32")
    let bert = try config("tiny-bert")
    let (ll, li, lh, lkv) = (
      llama["num_hidden_layers"]!, llama["intermediate_size"]!, llama["num_attention_heads"]!,
      llama["num_key_value_heads"]!
    )
    let (bl, bi, bh) = (bert["num_hidden_layers"]!, bert["intermediate_size"]!, bert["num_attention_heads"]!)
    let groups = floor(0.5, lkv)
    // Rows: every 2-D float weight but embeddings and lm_head, each on its own.
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let rows = input.tensors.filter {
      $0.info.shape.count == 2 && $0.name.hasSuffix(".weight") && !$0.name.contains("embed")
        && !$0.name.hasPrefix("lm_head")
    }.map { $0.info.shape[0] }
    // (model, options, one layer's (or one tensor's) count, the model's, every layer's)
    let cases: [(String, [String], String, String, String)] = [
      (
        "tiny-llama-f32", ["--structure", "mlp", "--ratio", "0.25", "--shrink"],
        "\(floor(0.25, li)) of \(li) MLP neurons", "\(ll * floor(0.25, li)) of \(ll * li) MLP neurons",
        "\(floor(0.25, li)) of \(li) in each of \(ll) layers"
      ),
      (
        "tiny-llama-f32", ["--structure", "heads", "--ratio", "0.5"],
        "\(groups) of \(lkv) key-value head groups (\(groups * lh / lkv) of \(lh) attention heads)",
        "\(ll * groups) of \(ll * lkv) key-value head groups (\(ll * groups * lh / lkv) of \(ll * lh) attention heads)",
        "\(groups) of \(lkv) in each of \(ll) layers"
      ),
      (
        "tiny-llama-f32", ["--structure", "rows", "--ratio", "0.5"], "\(floor(0.5, 64)) of 64 rows",
        "\(rows.reduce(0) { $0 + floor(0.5, $1) }) of \(rows.reduce(0, +)) rows",
        "\(rows.reduce(0) { $0 + floor(0.5, $1) } / ll) of \(rows.reduce(0, +) / ll) in each of \(ll) layers"
      ),
      (
        "tiny-bert", ["--structure", "mlp", "--ratio", "0.25"], "\(floor(0.25, bi)) of \(bi) MLP neurons",
        "\(bl * floor(0.25, bi)) of \(bl * bi) MLP neurons", "\(floor(0.25, bi)) of \(bi) in each of \(bl) layers"
      ),
      (
        "tiny-bert", ["--structure", "heads", "--ratio", "0.25"], "\(floor(0.25, bh)) of \(bh) attention heads",
        "\(bl * floor(0.25, bh)) of \(bl * bh) attention heads", "\(floor(0.25, bh)) of \(bh) in each of \(bl) layers"
      ),
    ]
    let folder = TemporaryFolder()
    for (index, (model, options, one, total, each)) in cases.enumerated() {
      let arguments = ["prune", fixture(model), folder.file("o\(index)"), "--method", "structured"] + options
      let run = try runProcess(swiftcompressExecutable, arguments)
      #expect(run.status == 0, "\(arguments): \(run.stderr)")
      #expect(run.stdout.contains("\(total) pruned, \(each)"), "\(arguments): \(run.stdout)")
      for mode in ["--dry-run", "--explain"] {
        let planned = try runProcess(
          swiftcompressExecutable,
          ["prune", fixture(model), folder.file("plan\(index)"), "--method", "structured"] + options + [mode])
        #expect(planned.status == 0, "\(arguments) \(mode): \(planned.stderr)")
        #expect(planned.stdout.contains(one + " "), "\(arguments) \(mode): \(planned.stdout)")
        #expect(planned.stdout.contains(total + " in the model"), "\(arguments) \(mode): \(planned.stdout)")
      }
    }
  }
}

@Suite("factorize command")
struct FactorizeCommandTests {
  @Test func factorizeAndItsUsageErrors() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let ok = try swiftcompress("factorize", model, folder.file("f"), "--method", "rsvd", "--energy", "0.9", "--json")
    #expect(ok.status == 0, "\(ok.stderr)")
    #expect(ok.stdout.contains("weight_a"))
    let budget = try swiftcompress("factorize", model, folder.file("b"), "--model-ratio", "0.3", "--json")
    #expect(budget.status == 0, "\(budget.stderr)")
    #expect(budget.stdout.contains("weight_a"))
    let cases: [([String], Int32, String)] = [
      (["--rank", "8", "--ratio", "0.5"], 64, "exactly one"),
      (["--budget", "100"], 64, "cannot give every one"),
      (["--model-ratio", "0"], 64, "outside (0, 1]"),
      (["--energy", "1.5"], 64, "outside (0, 1]"),
      (["--rank", "500"], 65, "above min(out, in)"),
      (["--method", "qr", "--rank", "8"], 64, "qr"),
    ]
    for (index, (arguments, status, message)) in cases.enumerated() {
      let out = folder.file("o\(index)")
      let result = try runProcess(swiftcompressExecutable, ["factorize", model, out] + arguments)
      #expect(result.status == status, "\(arguments): \(result.stderr)")
      #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
      #expect(!FileManager.default.fileExists(atPath: out))
    }
  }
}

@Suite("run command, dry runs, explain and gates")
struct RunCommandTests {
  let model = fixture("tiny-llama-f32")

  func writeRecipe(_ folder: TemporaryFolder, _ text: String, name: String = "recipe.yaml") -> String {
    let path = folder.file(name)
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    return path
  }

  /// A failed gate exits 3, after the output and report are written; it names the gate.
  @Test func failedGateExits3WithOutputWritten() throws {
    let folder = TemporaryFolder()
    let recipe = writeRecipe(
      folder,
      "stages:\n  - prune: {method: nm, pattern: '2:4'}\n  - quantize: {scheme: NVFP4}\ngates:\n  max_error: 0.01\n")
    let failed = try swiftcompress("run", recipe, model, folder.file("a"))
    #expect(failed.status == 3, "\(failed.stderr)")
    #expect(failed.stderr.contains("quality gate failed: max_error"))
    for file in ["model.safetensors", "swiftcompress-report.json", Recipe.fileName] {
      #expect(FileManager.default.fileExists(atPath: folder.file("a/" + file)), "\(file)")
    }
    // The command line's gate replaces the recipe's.
    let passed = try swiftcompress("run", recipe, model, folder.file("b"), "--max-error", "0.5", "--quiet")
    #expect(passed.status == 0, "\(passed.stderr)")
    #expect(passed.stdout.isEmpty && passed.stderr.isEmpty)
    // Single-pass commands take the same gates.
    let quantize = try swiftcompress(
      "quantize", model, folder.file("c"), "--scheme", "W4A16", "--min-ratio", "10", "--max-bpw", "8")
    #expect(quantize.status == 3)
    #expect(quantize.stdout.contains("gate min_ratio 10: measured"))
    #expect(quantize.stdout.contains("gate max_bpw 8: measured"))
    let factorize = try swiftcompress(
      "factorize", model, folder.file("d"), "--max-error", "0.9", "--gate-max-error", "0.001", "--json")
    #expect(factorize.status == 3)
    #expect(factorize.stdout.contains("\"gate\" : \"max_error\""))
  }

  @Test func dryRunPrintsThePlanAndWritesNothing() throws {
    let folder = TemporaryFolder()
    let recipe = writeRecipe(
      folder, "stages:\n  - factorize: {rank: 16}\n  - quantize: {scheme: W8A16, group_size: 16}\n")
    let text = try swiftcompress("run", recipe, model, folder.file("out"), "--dry-run")
    #expect(text.status == 0, "\(text.stderr)")
    #expect(text.stdout.contains("model.layers.0.mlp.down_proj.weight_a_packed"))
    #expect(text.stdout.contains("dry run: nothing was written"))
    let json = try swiftcompress("run", recipe, model, folder.file("out"), "--dry-run", "--json", "--min-ratio", "100")
    #expect(json.status == 3)
    let plan = try JSONDecoder().decode(PlanReport.self, from: Data(json.stdout.utf8))
    #expect(plan.totals.transformed == 14)
    #expect(plan.gates.first?.gate == "min_ratio")
    let single = try swiftcompress(
      "prune", model, folder.file("out"), "--method", "nm", "--pattern", "2:4", "--dry-run")
    #expect(single.status == 0)
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
  }

  @Test func explainSaysWhichRuleMatched() throws {
    let folder = TemporaryFolder()
    let recipe = writeRecipe(
      folder,
      "stages:\n  - quantize:\n      scheme: W4A16\n      targets: [Linear]\n      overrides:\n        - targets: [down_proj]\n          scale_search: mse\n"
    )
    let result = try swiftcompress("run", recipe, model, folder.file("out"), "--explain")
    #expect(result.status == 0, "\(result.stderr)")
    let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let down = try #require(lines.firstIndex(of: "model.layers.0.mlp.down_proj.weight"))
    #expect(
      lines[down + 1].contains("target 'Linear' matched; override 1 (line 6) matched 'down_proj': scale_search=mse"))
    let up = try #require(lines.firstIndex(of: "model.layers.0.mlp.up_proj.weight"))
    #expect(lines[up + 1].contains("override 1 (line 6) did not match (targets 'down_proj')"))
    let norm = try #require(lines.firstIndex(of: "model.norm.weight"))
    #expect(lines[norm + 1].contains("not applied: matches no target ('Linear')"))
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
    let single = try swiftcompress("quantize", model, folder.file("out"), "--scheme", "W4A16", "--explain", "--json")
    #expect(single.status == 0)
    #expect(single.stdout.contains("ignored by 'lm_head'"))
  }

  @Test func recipeErrorsExitWithTheirCode() throws {
    let folder = TemporaryFolder()
    let missing = try swiftcompress("run", folder.file("none.yaml"), model, folder.file("o"))
    #expect(missing.status == 66)
    let bad = writeRecipe(folder, "stages:\n  - quantize:\n      schema: W4A16\n")
    let result = try swiftcompress("run", bad, model, folder.file("o"))
    #expect(result.status == 64)
    #expect(result.stderr.contains("recipe.yaml:3: 'schema': is not a key of a quantize stage; allowed: "))
    #expect(!FileManager.default.fileExists(atPath: folder.file("o")))
  }

  /// --verbose prints a line per tensor even when piped; without it a piped run prints no progress.
  @Test func verboseAndQuiet() throws {
    let folder = TemporaryFolder()
    let verbose = try swiftcompress("quantize", model, folder.file("v"), "--scheme", "W8A16", "--verbose")
    #expect(verbose.status == 0)
    #expect(verbose.stderr.contains("[21/21]"))
    #expect(verbose.stderr.contains("model.layers.0.mlp.up_proj.weight: transformed (W8A16, group 128)"))
    let plain = try swiftcompress("quantize", model, folder.file("p"), "--scheme", "W8A16")
    #expect(plain.stderr.isEmpty)
    let quiet = try swiftcompress("quantize", model, folder.file("q"), "--scheme", "W8A16", "-q")
    #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty)
    // The one-stage recipe it wrote runs to the same bytes.
    let rerun = try swiftcompress("run", folder.file("q/" + Recipe.fileName), model, folder.file("r"), "-q")
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(
      FileManager.default.contentsEqual(
        atPath: folder.file("q/model.safetensors"), andPath: folder.file("r/model.safetensors")))
  }
}

/// The Makefile example of docs/examples: three recipes, one of which fails its gate.
@Suite("Makefile example")
struct MakefileExampleTests {
  @Test func threeRecipesRunAndTheFailedGateStopsMake() throws {
    let folder = TemporaryFolder()
    let examples = URL(fileURLWithPath: fixture("")).deletingLastPathComponent().appendingPathComponent("docs/examples")
      .path
    let result = try runProcess(
      "/usr/bin/make", ["-C", examples, "-k", "SWIFTCOMPRESS=\(swiftcompressExecutable)", "OUT=\(folder.path)"])
    #expect(result.status == 2, "\(result.stderr)")
    #expect(result.stderr.contains("quality gate failed: max_error 0.05"))
    for recipe in ["sparse24-nvfp4", "lowrank-w8"] {
      #expect(FileManager.default.fileExists(atPath: folder.file("\(recipe)/swiftcompress-report.json")), "\(recipe)")
    }
    // The failed recipe's output is written, but make forgets it, so the next make runs it again.
    #expect(FileManager.default.fileExists(atPath: folder.file("lqlora-w4/model.safetensors")))
    #expect(!FileManager.default.fileExists(atPath: folder.file("lqlora-w4/swiftcompress-report.json")))
  }
}

@Suite("Same bytes every time, and the manifest")
struct DeterminismTests {
  /// Every file but the reports, by relative path.
  func contents(_ folder: String) throws -> [String: Data] {
    var result: [String: Data] = [:]
    let enumerator = try #require(FileManager.default.enumerator(atPath: folder))
    while let next = enumerator.nextObject() as? String {
      var isDirectory: ObjCBool = false
      _ = FileManager.default.fileExists(atPath: folder + "/" + next, isDirectory: &isDirectory)
      if isDirectory.boolValue || next.hasPrefix("swiftcompress-report.") { continue }
      result[next] = FileManager.default.contents(atPath: folder + "/" + next)
    }
    return result
  }

  /// The report JSON without its timings.
  func reportWithoutTimings(_ folder: String) throws -> NSDictionary {
    let data = try #require(FileManager.default.contents(atPath: folder + "/swiftcompress-report.json"))
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return NSDictionary(dictionary: object.filter { $0.key != "timing" })
  }

  /// Each command, run with --jobs 1, 2 and 3 into the same path: the same files, and
  /// reports that differ only in timings.
  @Test(arguments: [
    ["quantize", "--scheme", "NVFP4"],
    ["quantize", "--scheme", "W4A16_ASYM", "--scale-search", "mse"],
    ["prune", "--method", "magnitude", "--sparsity", "0.5", "--scope", "global", "--sparse-format", "bitmask"],
    ["prune", "--method", "nm", "--pattern", "2:4"],
    ["factorize", "--method", "rsvd", "--rank", "16"],
    ["convert", "--dtype", "bf16"],
  ])
  func outputsDoNotDependOnJobs(_ command: [String]) throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    var first: [String: Data]?
    var firstReport: NSDictionary?
    for jobs in ["1", "2", "3", "2"] {
      let result = try runProcess(
        swiftcompressExecutable,
        [command[0], fixture("tiny-llama-sharded"), out] + command.dropFirst()
          + ["--jobs", jobs, "--force", "--quiet", "--max-shard-size", "300KB"])
      #expect(result.status == 0, "\(result.stderr)")
      let files = try contents(out)
      let report = try reportWithoutTimings(out)
      if let first, let firstReport {
        #expect(files.keys.sorted() == first.keys.sorted())
        for (name, data) in files { #expect(data == first[name], "\(command) --jobs \(jobs): \(name) differs") }
        #expect(report == firstReport, "\(command) --jobs \(jobs): the report differs beyond timings")
      } else {
        first = files
        firstReport = report
        #expect(files.keys.contains(Manifest.fileName))
      }
    }
  }

  @Test func verifyChecksTheManifest() throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    #expect(try swiftcompress("quantize", fixture("tiny-llama-f32"), out, "--scheme", "W8A16", "-q").status == 0)
    let manifest = try #require(try Manifest.load(folder: out))
    #expect(manifest.files.map(\.path).contains("model.safetensors"))
    #expect(manifest.files.map(\.path).contains("config.json"))
    #expect(manifest.reports.contains("swiftcompress-report.json"))
    let model = try #require(manifest.files.first { $0.path == "model.safetensors" })
    let (bytes, _) = try Manifest.checksum(path: out + "/model.safetensors")
    #expect(model.bytes == bytes)
    #expect(try swiftcompress("verify", out).status == 0)
    // One flipped byte inside a tensor: the structure is fine, the checksum is not.
    let handle = try #require(FileHandle(forUpdatingAtPath: out + "/model.safetensors"))
    try handle.seek(toOffset: UInt64(bytes - 10))
    let original = try #require(try handle.read(upToCount: 1))
    try handle.seek(toOffset: UInt64(bytes - 10))
    try handle.write(contentsOf: Data([original[0] ^ 0xFF]))
    try handle.close()
    let damaged = try swiftcompress("verify", out)
    #expect(damaged.status == 65)
    #expect(damaged.stdout.contains("model.safetensors: has CRC-32"))
    #expect(damaged.stdout.contains("manifest-mismatch"))
    try FileManager.default.removeItem(atPath: out + "/config.json")
    let missing = try swiftcompress("verify", out, "--json")
    #expect(missing.stdout.contains("listed in the manifest but missing"))
  }
}

@Suite("Split runs and merge")
struct SplitMergeTests {
  /// A 3-way split then merge writes what one run writes; the report differs only in
  /// timings (and the output path).
  @Test(arguments: [
    ["quantize", "--scheme", "NVFP4"],
    ["prune", "--method", "magnitude", "--sparsity", "0.5", "--scope", "global"],
    // Units counted once per coupled group, whichever part wrote the group's tensors.
    ["prune", "--method", "structured", "--structure", "mlp", "--ratio", "0.25", "--shrink"],
    ["factorize", "--method", "rsvd", "--rank", "8"],
  ])
  func threeWaySplitThenMergeIsOneRun(_ command: [String]) throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-sharded")
    let common = Array(command.dropFirst()) + ["--max-shard-size", "100KB", "--quiet"]
    let one = try runProcess(swiftcompressExecutable, [command[0], model, folder.file("one")] + common)
    #expect(one.status == 0, "\(one.stderr)")
    for i in 0..<3 {
      let part = try runProcess(
        swiftcompressExecutable,
        [command[0], model, folder.file("part\(i)")] + common + ["--shard-index", "\(i)", "--shard-count", "3"])
      #expect(part.status == 0, "\(part.stderr)")
      // A part holds only its own shards.
      let weights = try FileManager.default.contentsOfDirectory(atPath: folder.file("part\(i)")).filter {
        $0.hasSuffix(".safetensors")
      }
      #expect(
        weights.allSatisfy { name in
          let number = Int(name.dropFirst("model-".count).prefix(5)) ?? 0
          return (number - 1) % 3 == i
        })
    }
    let merged = try swiftcompress(
      "merge", folder.file("merged"), folder.file("part2"), folder.file("part0"), folder.file("part1"), "-q")
    #expect(merged.status == 0, "\(merged.stderr)")
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.file("one")).sorted()
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("merged")).sorted() == names)
    for name in names where !name.hasPrefix("swiftcompress-report.") {
      #expect(
        FileManager.default.contentsEqual(atPath: folder.file("one/" + name), andPath: folder.file("merged/" + name)),
        "\(name)")
    }
    func report(_ path: String) throws -> NSDictionary {
      let data = try #require(FileManager.default.contents(atPath: path + "/swiftcompress-report.json"))
      var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
      object["timing"] = nil
      var output = try #require(object["output"] as? [String: Any])
      output["path"] = nil
      object["output"] = output
      return NSDictionary(dictionary: object)
    }
    #expect(try report(folder.file("one")) == report(folder.file("merged")))
    #expect(try swiftcompress("verify", folder.file("merged")).status == 0)
  }

  @Test func mergeRefusesIncompleteOrMismatchedParts() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-sharded")
    for (name, index, scheme) in [("a0", 0, "W8A16"), ("a1", 1, "W8A16"), ("b1", 1, "W4A16")] {
      let result = try swiftcompress(
        "quantize", model, folder.file(name), "--scheme", scheme, "--max-shard-size", "100KB", "--shard-index",
        "\(index)", "--shard-count", "2", "-q")
      #expect(result.status == 0, "\(result.stderr)")
    }
    let missing = try swiftcompress("merge", folder.file("m1"), folder.file("a0"))
    #expect(missing.status == 65)
    #expect(missing.stderr.contains("missing --shard-index 1"))
    #expect(missing.stderr.contains("folders '\(folder.file("a0"))': are not the 2 parts"), "\(missing.stderr)")
    let twice = try swiftcompress("merge", folder.file("m2"), folder.file("a0"), folder.file("a0"))
    #expect(twice.status == 65)
    let mixed = try swiftcompress("merge", folder.file("m3"), folder.file("a0"), folder.file("b1"))
    #expect(mixed.status == 65)
    #expect(mixed.stderr.contains("other options"))
    let notPart = try swiftcompress("merge", folder.file("m4"), fixture("tiny-llama-f32"))
    #expect(notPart.status == 65)
    // A damaged part is caught by its manifest before anything is written.
    let shard = try #require(
      try FileManager.default.contentsOfDirectory(atPath: folder.file("a1")).first { $0.hasSuffix(".safetensors") })
    let handle = try #require(FileHandle(forUpdatingAtPath: folder.file("a1/" + shard)))
    try handle.seekToEnd()
    try handle.write(contentsOf: Data([0]))
    try handle.close()
    let damaged = try swiftcompress("merge", folder.file("m5"), folder.file("a0"), folder.file("a1"))
    #expect(damaged.status == 65)
    #expect(damaged.stderr.contains("manifest"))
    for name in ["m1", "m2", "m3", "m4", "m5"] { #expect(!FileManager.default.fileExists(atPath: folder.file(name))) }
    let bad = try swiftcompress(
      "quantize", model, folder.file("x"), "--scheme", "W8A16", "--shard-index", "2", "--shard-count", "2")
    #expect(bad.status == 64)
  }
}

@Suite("Resume after a kill")
struct ResumeTests {
  /// The output's shards: one linear weight each.
  static let shardCount = 24
  let arguments = ["--scheme", "W4A16", "--max-shard-size", "600KB"]

  /// A model of `shardCount` F32 linear weights of 512 x 2048 (4 MiB each) with a
  /// config.json: its W4A16 output has one weight per shard, so that a run is still far
  /// from done when its first shards are journaled.
  func makeModel(_ folder: TemporaryFolder) throws -> String {
    let model = folder.file("model")
    try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: false)
    let (rows, columns) = (512, 2048)
    let row = (0..<columns).map { Float(($0 * 7919) % 2001) / 1000 - 1 }
    let tensor = [[Float]](repeating: row, count: rows).flatMap { $0 }
    let names = (0..<Self.shardCount).map { "model.layers.\($0).mlp.up_proj.weight" }
    let writer = try SafeTensorsWriter(
      destination: model + "/model.safetensors",
      tensors: names.map { PlannedTensor(name: $0, dtype: .f32, shape: [rows, columns]) })
    for name in names { try tensor.withUnsafeBytes { try writer.write(name, $0) } }
    try writer.finish()
    _ = FileManager.default.createFile(atPath: model + "/config.json", contents: Data("{}\n".utf8))
    return model
  }

  /// The shards the journal of the staging folder of `out` lists, nil when there is no
  /// staging folder or no journal yet.
  func journaledShards(_ out: String) -> Int? {
    let parent = (out as NSString).deletingLastPathComponent
    let prefix = "." + (out as NSString).lastPathComponent + ".partial-"
    let staging = ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(prefix) }
    for name in staging {
      // The run writes its journal aside and renames it: a read sees a whole one.
      guard let data = FileManager.default.contents(atPath: parent + "/" + name + "/" + OutputCleanup.journalFileName),
        let journal = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let shards = journal["shards"] as? [Any]
      else { continue }
      return shards.count
    }
    return nil
  }

  /// Starts `quantize` on `model` into `out`, waits until its journal lists at least
  /// `afterShards` finished shards (however loaded the machine), sends it `signal` and
  /// waits for it to end. Returns its status, its stderr, and the shards its journal
  /// lists once it is gone (at least `afterShards`; a few more when it went on while
  /// the signal was on its way).
  func interruptedRun(_ model: String, _ out: String, afterShards: Int, signal: Int32) throws -> (
    status: Int32, stderr: String, journaled: Int
  ) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: swiftcompressExecutable)
    process.arguments = ["quantize", model, out] + arguments + ["-q"]
    let stderr = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = stderr
    try process.run()
    let reader = FileHandleReader(stderr.fileHandleForReading)
    let deadline = Date().addingTimeInterval(600)
    while process.isRunning, (journaledShards(out) ?? 0) < afterShards, Date() < deadline {
      Thread.sleep(forTimeInterval: 0.002)
    }
    let reached = (journaledShards(out) ?? 0) >= afterShards
    kill(process.processIdentifier, reached ? signal : SIGKILL)
    process.waitUntilExit()
    let text = reader.text()
    try #require(reached, "the run ended or stalled before journaling \(afterShards) shards: \(text)")
    return (process.terminationStatus, text, journaledShards(out) ?? 0)
  }

  /// Ctrl-C after two shards keeps them for the next run, and says so.
  @Test func anInterruptKeepsFinishedShardsForTheNextRun() throws {
    let folder = TemporaryFolder()
    let model = try makeModel(folder)
    let interrupted = try interruptedRun(model, folder.file("out"), afterShards: 2, signal: SIGINT)
    #expect(interrupted.status == 130, "\(interrupted.stderr)")
    #expect(interrupted.stderr.contains("rerun the same command to resume"))
    #expect(try staging(folder).count == 1)
    #expect(interrupted.journaled >= 2 && interrupted.journaled < Self.shardCount, "\(interrupted.journaled)")
    let rerun = try runProcess(swiftcompressExecutable, ["quantize", model, folder.file("out")] + arguments)
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(
      rerun.stderr.contains(
        "resumed an interrupted run: \(interrupted.journaled) of \(Self.shardCount) output shards"),
      "\(rerun.stderr)")
    #expect(try staging(folder).isEmpty)
  }

  func staging(_ folder: TemporaryFolder) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(".out.partial-") }
  }

  @Test func aRerunSkipsTheShardsAKilledRunFinished() throws {
    let folder = TemporaryFolder()
    let model = try makeModel(folder)
    let clean = try runProcess(swiftcompressExecutable, ["quantize", model, folder.file("clean")] + arguments + ["-q"])
    #expect(clean.status == 0)
    // SIGKILL after 3 shards: no output, a staging folder with its journal.
    let killed = try interruptedRun(model, folder.file("out"), afterShards: 3, signal: SIGKILL)
    #expect(killed.status % 128 == 9)
    #expect(killed.journaled >= 3 && killed.journaled < Self.shardCount, "\(killed.journaled)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
    let left = try staging(folder)
    #expect(left.count == 1)
    // Damage one finished shard: it is written again, the others are kept.
    let second = folder.file(left[0] + String(format: "/model-00002-of-%05d.safetensors", Self.shardCount))
    let handle = try #require(FileHandle(forUpdatingAtPath: second))
    try handle.seek(toOffset: 200)
    try handle.write(contentsOf: Data([0xAB, 0xCD]))
    try handle.close()
    let rerun = try runProcess(
      swiftcompressExecutable, ["quantize", model, folder.file("out")] + arguments + ["--json"])
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(
      rerun.stderr.contains("resumed an interrupted run: \(killed.journaled - 1) of \(Self.shardCount) output shards"),
      "\(rerun.stderr)")
    #expect(try staging(folder).isEmpty)
    for name in try FileManager.default.contentsOfDirectory(atPath: folder.file("clean"))
    where !name.hasPrefix("swiftcompress-report.") {
      #expect(
        FileManager.default.contentsEqual(atPath: folder.file("clean/" + name), andPath: folder.file("out/" + name)),
        "\(name)")
    }
    // The report is whole: every tensor, the same totals as the clean run.
    let data = try #require(FileManager.default.contents(atPath: folder.file("out/swiftcompress-report.json")))
    let report = try JSONDecoder().decode(Report.self, from: data)
    let cleanData = try #require(FileManager.default.contents(atPath: folder.file("clean/swiftcompress-report.json")))
    let cleanReport = try JSONDecoder().decode(Report.self, from: cleanData)
    #expect(report.tensors == cleanReport.tensors)
    #expect(report.totals == cleanReport.totals)
  }

  @Test func otherOptionsStartAfreshAndClearTheStaleFolder() throws {
    let folder = TemporaryFolder()
    let model = try makeModel(folder)
    #expect(try interruptedRun(model, folder.file("out"), afterShards: 2, signal: SIGKILL).status % 128 == 9)
    #expect(try staging(folder).count == 1)
    let rerun = try swiftcompress(
      "quantize", model, folder.file("out"), "--scheme", "W8A16", "--max-shard-size", "600KB")
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(!rerun.stderr.contains("resumed"))
    #expect(try staging(folder).isEmpty)
    #expect(try swiftcompress("verify", folder.file("out")).status == 0)
  }
}
