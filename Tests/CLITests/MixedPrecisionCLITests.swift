import Foundation
import TestSupport
import Testing

/// `quantize --scheme-for`, `--target-bpw`/`--target-size` and `analyze` end to end, and their
/// bad input refused before anything is written.
@Suite(.serialized) struct MixedPrecisionCLITests {
  static let model = fixture("tiny-llama-f32")
  static let statistics = fixture("golden/evaluation/statistics.tiny-llama-f32.safetensors")
  static let tokens = fixture("golden/evaluation/tokens.tiny-llama-f32.jsonl")

  static func json(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
  }

  static func meanKLD(_ candidate: String) throws -> Double {
    let run = try swiftcompress("evaluate", model, candidate, "--tokens", tokens, "--json")
    #expect(run.status == 0, "\(run.stderr)")
    let decoder = json(run.stdout)["decoder"] as? [String: Any]
    return (decoder?["kld"] as? [String: Any])?["mean"] as? Double ?? .nan
  }

  /// The stored bits per weight of the quantized modules: every tensor of a module in a config
  /// group, over the weights of those modules.
  static func allocatedBitsPerWeight(_ folder: String, input: String) throws -> Double {
    let config = json(try String(contentsOfFile: folder + "/config.json", encoding: .utf8))
    let groups = (config["quantization_config"] as? [String: Any])?["config_groups"] as? [String: Any] ?? [:]
    var modules = Set<String>()
    for case let group as [String: Any] in groups.values {
      for case let target as String in group["targets"] as? [Any] ?? [] { modules.insert(target) }
    }
    let inspect = try swiftcompress("inspect", folder, "--json")
    let original = try swiftcompress("inspect", input, "--json")
    func tensors(_ run: (status: Int32, stdout: String, stderr: String)) -> [[String: Any]] {
      json(run.stdout)["tensors"] as? [[String: Any]] ?? []
    }
    func module(_ name: String) -> String? {
      let parts = name.split(separator: ".")
      let base = parts.dropLast().joined(separator: ".")
      return modules.contains(base) ? base : nil
    }
    let bits = tensors(inspect).filter { module($0["name"] as? String ?? "") != nil }.reduce(0) {
      $0 + (($1["bytes"] as? Int) ?? 0) * 8
    }
    let weights = tensors(original).filter { module($0["name"] as? String ?? "") != nil }.reduce(0) {
      $0 + ((($1["shape"] as? [Int]) ?? []).reduce(1, *))
    }
    return Double(bits) / Double(max(1, weights))
  }

  /// The allocation stays within the target, and with calibrate's statistics its measured KL
  /// divergence is below that of every single scheme that fits the same target.
  @Test func allocationFitsTheTargetAndBeatsUniformSchemesInKLD() throws {
    let folder = TemporaryFolder()
    let mixed = folder.file("mixed")
    let run = try swiftcompress(
      "quantize", Self.model, mixed, "--target-bpw", "4.3", "--calibration", Self.statistics, "-q")
    #expect(run.status == 0, "\(run.stderr)")
    let bpw = try Self.allocatedBitsPerWeight(mixed, input: Self.model)
    #expect(bpw <= 4.3 && bpw > 4.2, "\(bpw)")
    let report = try String(contentsOfFile: mixed + "/swiftcompress-report.md", encoding: .utf8)
    #expect(report.contains("allocation (--target-bpw 4.300 bits per weight)"))
    let allocated = try Self.meanKLD(mixed)
    // The single schemes at or under 4.3 bits per weight on this F32 model: MXFP4 (4.25) and
    // W4A16 in groups of 128 with F32 scales (4.25).
    for (scheme, group) in [("MXFP4", nil), ("W4A16", "128")] as [(String, String?)] {
      let out = folder.file(scheme)
      let args = ["quantize", Self.model, out, "--scheme", scheme, "-q"] + (group.map { ["--group-size", $0] } ?? [])
      #expect(try runProcess(swiftcompressExecutable, args).status == 0)
      #expect(try Self.allocatedBitsPerWeight(out, input: Self.model) <= 4.3)
      let uniform = try Self.meanKLD(out)
      #expect(allocated < uniform, "\(scheme): \(uniform) <= allocated \(allocated)")
    }
  }

  @Test func targetSizeIsNeverExceeded() throws {
    let folder = TemporaryFolder()
    let out = folder.file("sized")
    let run = try swiftcompress("quantize", Self.model, out, "--target-size", "900KiB", "-q")
    #expect(run.status == 0, "\(run.stderr)")
    let files = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".safetensors") }
    let size = try files.reduce(0) {
      $0 + ((try FileManager.default.attributesOfItem(atPath: out + "/" + $1)[.size] as? Int) ?? 0)
    }
    #expect(size <= 900 * 1024 && size > 700 * 1024, "\(size)")
  }

  @Test func analyzePrintsEveryWeightUnderEveryScheme() throws {
    let folder = TemporaryFolder()
    let html = folder.file("heat.html")
    let run = try swiftcompress(
      "analyze", Self.model, "--schemes", "NVFP4,W4A16:g32,W8A16,keep", "--calibration", Self.statistics, "--json",
      "--html", html)
    #expect(run.status == 0, "\(run.stderr)")
    let result = Self.json(run.stdout)
    let rows = result["rows"] as? [[String: Any]] ?? []
    #expect(rows.count == 14)
    for row in rows {
      let cells = row["cells"] as? [[String: Any]] ?? []
      #expect(cells.count == 4)
      let errors = cells.compactMap { $0["relative_error"] as? Double ?? $0["relativeError"] as? Double }
      #expect(errors.count == 4)
      // 8 bits beat 4, and keep is exact.
      #expect(errors[2] < errors[0] && errors[2] < errors[1] && errors[3] == 0)
      #expect(cells.allSatisfy { $0["outputError"] != nil || $0["output_error"] != nil })
    }
    let page = try String(contentsOfFile: html, encoding: .utf8)
    #expect(page.contains("hsl(") && page.contains("model.layers.1.mlp.down_proj.weight"))
    let table = try swiftcompress("analyze", Self.model)
    #expect(table.status == 0)
    #expect(table.stdout.contains("W4A16:g128") && table.stdout.contains("summed loss"))
  }

  @Test func badInputIsRefusedBeforeWriting() throws {
    let folder = TemporaryFolder()
    let out = folder.file("never")
    let cases: [([String], Int32, String)] = [
      (["--target-bpw", "3"], 64, "4.250 bits per weight to 32.000 bits per weight"),
      (["--target-bpw", "40"], 64, "above the largest"),
      (["--target-bpw", "4.5", "--candidates", "NVFP4,W9A16"], 64, "unknown scheme 'W9A16'"),
      (["--target-bpw", "4.5", "--target-size", "1M"], 64, "not both"),
      (["--target-size", "1x"], 64, "--target-size"),
      (["--scheme", "W4A16", "--scheme-for", "mlp"], 64, "REGEX=SCHEME"),
      (["--scheme", "W4A16", "--scheme-for", "mlp=NVFP4:g32"], 64, "leave out"),
      (["--scheme", "W4A16", "--scheme-for", "nothing=W8A16", "--strict"], 65, "matches no weight"),
      (["--target-bpw", "4.5", "--scheme-for", "mlp=W8A16"], 64, "cannot be combined"),
      (["--scheme", "W4A16", "--candidates", "NVFP4"], 64, "--target-bpw"),
      ([], 64, "--scheme is required"),
    ]
    for (args, status, message) in cases {
      let run = try runProcess(swiftcompressExecutable, ["quantize", Self.model, out] + args)
      #expect(run.status == status, "\(args): \(run.stderr)")
      #expect(run.stderr.contains(message), "\(args): \(run.stderr)")
      #expect(!FileManager.default.fileExists(atPath: out), "\(args)")
    }
    let warned = try swiftcompress("quantize", Self.model, out, "--scheme", "W4A16", "--scheme-for", "nothing=W8A16")
    #expect(warned.status == 0 && warned.stderr.contains("'nothing=W8A16:g128' matches no weight"))
  }
}

extension MixedPrecisionCLITests {
  /// A factorized input: each factor is stored with its module's scheme (NVFP4 with its own
  /// global scale), under one scheme, under an allocation and under several config groups;
  /// factors left unquantized are listed in ignore and multiplied out as they are, and
  /// `diff` and `decompress` read every output.
  @Test func factorsOfFactorizeAreQuantizedUnderOneSchemeOrSeveral() throws {
    let folder = TemporaryFolder()
    let factored = folder.file("factored")
    #expect(try swiftcompress("factorize", Self.model, factored, "--rank", "16", "-q").status == 0)
    let runs: [(args: [String], groups: Int)] = [
      (["--scheme", "NVFP4"], 1), (["--target-bpw", "6"], 1),
      (["--scheme", "W4A16", "--group-size", "16", "--scheme-for", "mlp=W8A16:g16", "--scheme-for", "o_proj=keep"], 2),
    ]
    for (i, (args, groups)) in runs.enumerated() {
      let out = folder.file("out\(i)")
      let run = try runProcess(swiftcompressExecutable, ["quantize", factored, out] + args + ["-q"])
      #expect(run.status == 0, "\(args): \(run.stderr)")
      let config = Self.json(try String(contentsOfFile: out + "/config.json", encoding: .utf8))
      let quantization = config["quantization_config"] as? [String: Any]
      #expect((quantization?["config_groups"] as? [String: Any])?.count == groups, "\(args)")
      let names = (Self.json(try swiftcompress("inspect", out, "--json").stdout)["tensors"] as? [[String: Any]] ?? [])
        .compactMap { $0["name"] as? String }
      #expect(names.contains("model.layers.0.mlp.down_proj.weight_a_packed"), "\(args)")
      // Factors kept dense are named in ignore.
      let ignore = quantization?["ignore"] as? [String] ?? []
      for name in names where name.hasSuffix(".weight_a") {
        #expect(ignore.contains(String(name.dropLast(".weight_a".count))), "\(args): \(name)")
      }
      let dense = out + "-dense"
      #expect(try swiftcompress("decompress", out, dense, "-q").status == 0, "\(args)")
      for candidate in [out, dense] {
        let diff = try swiftcompress("diff", factored, candidate, "--json")
        #expect(diff.status == 0, "\(args): \(diff.stderr)")
        let totals = Self.json(diff.stdout)["totals"] as? [String: Any]
        let error = (totals?["metrics"] as? [String: Any])?["relative_frobenius_error"] as? Double ?? .nan
        #expect(error > 0 && error < 0.1, "\(args): \(error)")
      }
    }
  }

  /// A recipe's overrides that choose schemes write what the same options on the command
  /// line write, byte for byte: NVFP4's global scale shared only by the modules that take
  /// NVFP4 (in layer 0, k_proj has the largest magnitude of q/k/v and layer 1's q_proj), not
  /// by one an override skips or an earlier stage factorized; config groups in checkpoint
  /// order whichever variant comes first. A fused set split between schemes gets the same
  /// warning, a mix of integer and FP4 groups the same loading note.
  @Test(
    arguments: [
      (
        "scheme: W4A16\n      overrides:\n        - targets: [q_proj, v_proj]\n          scheme: NVFP4",
        [["--scheme", "W4A16", "--scheme-for", "q_proj|v_proj=NVFP4"]], true
      ),
      (
        "scheme: NVFP4\n      overrides:\n        - targets: [mlp]\n          scheme: W8A16",
        [["--scheme", "NVFP4", "--scheme-for", "mlp=W8A16"]], false
      ),
      (
        "scheme: NVFP4\n      overrides:\n        - targets: [k_proj]\n          skip: true",
        [["--scheme", "NVFP4", "--scheme-for", "k_proj=keep"]], true
      ),
      (
        "scheme: W4A16\n      scheme_for: ['q_proj=NVFP4']\n      overrides:\n        - targets: [k_proj, v_proj]\n          scheme: NVFP4",
        [["--scheme", "W4A16", "--scheme-for", "self_attn\\.[qkv]_proj=NVFP4"]], false
      ),
    ] as [(String, [[String]], Bool)])
  func recipeOverridesWriteWhatTheCommandLineWrites(stage: String, commands: [[String]], splits: Bool) throws {
    let folder = TemporaryFolder()
    let recipe = folder.file("mix.yaml")
    try "stages:\n  - quantize:\n      \(stage)\n".write(toFile: recipe, atomically: true, encoding: .utf8)
    let run = try swiftcompress("run", recipe, Self.model, folder.file("recipe"))
    #expect(run.status == 0, "\(run.stderr)")
    let flag = try runProcess(swiftcompressExecutable, ["quantize", Self.model, folder.file("flag")] + commands[0])
    #expect(flag.status == 0, "\(flag.stderr)")
    for file in ["model.safetensors", "config.json"] {
      let a = FileManager.default.contents(atPath: folder.file("recipe/" + file))
      #expect(a != nil && a == FileManager.default.contents(atPath: folder.file("flag/" + file)), "\(file)")
    }
    let split = "the modules vLLM fuses into model.layers.1.self_attn.qkv different schemes"
    #expect(run.stderr.contains(split) == splits, "\(run.stderr)")
    #expect(flag.stderr.contains(split) == splits, "\(flag.stderr)")
    let mixesFormats = stage.contains("W4A16") || stage.contains("W8A16")
    for stderr in [run.stderr, flag.stderr] {
      #expect(stderr.contains("F32 weights with integer and FP4 config groups") == mixesFormats)
    }
  }

  /// factorize then NVFP4 in one recipe writes what the two commands write: the factorized
  /// q_proj's partners share a global scale between themselves only. Factors in FP8 next to
  /// an integer group decode with their scales (they are not taken for dense factors), and
  /// --scheme-for rules are matched against factorized weights too.
  @Test func factorizeThenQuantizeInARecipeWritesWhatTheCommandsWrite() throws {
    let folder = TemporaryFolder()
    let recipe = folder.file("chain.yaml")
    try "stages:\n  - factorize:\n      rank: 16\n      targets: [q_proj]\n  - quantize:\n      scheme: NVFP4\n"
      .write(toFile: recipe, atomically: true, encoding: .utf8)
    #expect(try swiftcompress("run", recipe, Self.model, folder.file("recipe"), "-q").status == 0)
    let factored = folder.file("factored")
    #expect(
      try swiftcompress("factorize", Self.model, factored, "--rank", "16", "--include", "q_proj", "-q").status == 0)
    #expect(try swiftcompress("quantize", factored, folder.file("flag"), "--scheme", "NVFP4", "-q").status == 0)
    let a = FileManager.default.contents(atPath: folder.file("recipe/model.safetensors"))
    #expect(a != nil && a == FileManager.default.contents(atPath: folder.file("flag/model.safetensors")))
    // Factorized modules are no part of a fused layer: skipping k_proj splits nothing.
    let skip = folder.file("skip.yaml")
    try
      "stages:\n  - factorize:\n      rank: 16\n      targets: [q_proj, k_proj, v_proj]\n  - quantize:\n      scheme: NVFP4\n      overrides:\n        - targets: [k_proj]\n          skip: true\n"
      .write(toFile: skip, atomically: true, encoding: .utf8)
    let skipped = try swiftcompress("run", skip, Self.model, folder.file("skipped"), "--strict", "-q")
    #expect(skipped.status == 0, "\(skipped.stderr)")
    // A second quantize stage would lose the first one's config groups: refused.
    let twice = folder.file("twice.yaml")
    try
      "stages:\n  - quantize:\n      scheme: W8A16\n      targets: [self_attn]\n  - quantize:\n      scheme: W4A16\n      targets: [mlp]\n"
      .write(toFile: twice, atomically: true, encoding: .utf8)
    let refused = try swiftcompress("run", twice, Self.model, folder.file("never"))
    #expect(refused.status == 64 && refused.stderr.contains("second quantize stage"), "\(refused.stderr)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("never")))

    let all = folder.file("all")
    #expect(try swiftcompress("factorize", Self.model, all, "--rank", "16", "-q").status == 0)
    let fp8 = folder.file("fp8")
    let mixed = try swiftcompress(
      "quantize", all, fp8, "--scheme", "FP8_DYNAMIC", "--scheme-for", "o_proj=keep", "--scheme-for", "mlp=W8A16:g16",
      "--strict", "-q")
    #expect(mixed.status == 0, "\(mixed.stderr)")
    let diff = try swiftcompress("diff", all, fp8, "--json")
    let metrics = (Self.json(diff.stdout)["totals"] as? [String: Any])?["metrics"] as? [String: Any]
    let error = metrics?["relative_frobenius_error"] as? Double ?? .nan
    #expect(error > 0 && error < 0.02, "\(error)")
  }

  static let calibrationTokens = fixture("golden/calibrated/calibration-tokens.llama.jsonl")
  static let llama = fixture("models/llama")

  /// analyze --tokens measures the model's KL divergence with one weight quantized: the same
  /// figure `evaluate` gives for a checkpoint with only that weight quantized (--scheme-for,
  /// everything else kept). The allocation reads the measurements back with --sensitivity,
  /// and refuses them for another input.
  @Test func measuredLossIsWhatEvaluateMeasuresAndFeedsTheAllocation() throws {
    let folder = TemporaryFolder()
    let sensitivity = folder.file("sensitivity.json")
    let run = try swiftcompress(
      "analyze", Self.llama, "--schemes", "NVFP4,W8A16:g64,keep", "--tokens", Self.calibrationTokens, "--samples", "8",
      "--json")
    #expect(run.status == 0, "\(run.stderr)")
    try run.stdout.write(toFile: sensitivity, atomically: true, encoding: .utf8)
    let rows = Self.json(run.stdout)["rows"] as? [[String: Any]] ?? []
    #expect(rows.count == 14)
    let row = try #require(rows.first { ($0["tensor"] as? String) == "model.layers.1.mlp.down_proj.weight" })
    let cells = row["cells"] as? [[String: Any]] ?? []
    func measured(_ i: Int) -> Double { (cells[i]["measuredLoss"] ?? cells[i]["measured_loss"]) as? Double ?? .nan }
    #expect(measured(2) == 0)
    #expect(measured(1) < measured(0))
    let only = folder.file("only")
    let quantized = try swiftcompress(
      "quantize", Self.llama, only, "--scheme", "W4A16", "--scheme-for", ".=keep", "--scheme-for",
      "layers\\.1\\.mlp\\.down_proj=NVFP4", "-q")
    #expect(quantized.status == 0, "\(quantized.stderr)")
    let evaluated = try swiftcompress(
      "evaluate", Self.llama, only, "--tokens", Self.calibrationTokens, "--samples", "8", "--json")
    let kld = ((Self.json(evaluated.stdout)["decoder"] as? [String: Any])?["kld"] as? [String: Any])?["mean"] as? Double
    #expect(
      kld.map { abs($0 - measured(0)) <= 1e-9 * max(1, $0) } == true, "\(String(describing: kld)) vs \(measured(0))")

    let mixed = folder.file("mixed")
    let allocated = try swiftcompress(
      "quantize", Self.llama, mixed, "--target-bpw", "5", "--sensitivity", sensitivity, "-q")
    #expect(allocated.status == 0, "\(allocated.stderr)")
    let report = try String(contentsOfFile: mixed + "/swiftcompress-report.md", encoding: .utf8)
    #expect(report.contains("mean KL divergence with only that weight quantized"))
    #expect(report.contains("spells the allocation out as one scheme_for rule per module"))
    // The saved recipe holds the measured allocation's outcome: it writes the same weights.
    let again = folder.file("again")
    let rerun = try swiftcompress("run", mixed + "/swiftcompress-recipe.yaml", Self.llama, again, "-q")
    #expect(rerun.status == 0, "\(rerun.stderr)")
    for file in ["model.safetensors", "config.json"] {
      let first = FileManager.default.contents(atPath: mixed + "/" + file)
      #expect(first != nil && first == FileManager.default.contents(atPath: again + "/" + file), "\(file)")
    }
    let other = try swiftcompress(
      "quantize", Self.model, folder.file("other"), "--target-bpw", "5", "--sensitivity", sensitivity, "-q")
    #expect(other.status == 65 && other.stderr.contains("--sensitivity"), "\(other.stderr)")
  }
}

extension MixedPrecisionCLITests {
  /// GPTQ takes --scheme-for: each module is solved on its own scheme's grid, written in that
  /// scheme's group, and the model is closer to the original than round-to-nearest's same mix.
  @Test func gptqWritesEachModuleOnItsOwnGrid() throws {
    let folder = TemporaryFolder()
    let mix = [
      "--scheme", "W4A16", "--group-size", "32", "--scheme-for", "mlp\\.down_proj=W8A16:g32", "--scheme-for",
      "layers\\.0\\.self_attn=NVFP4", "-q",
    ]
    let gptq = folder.file("gptq")
    let rtn = folder.file("rtn")
    let run = try runProcess(
      swiftcompressExecutable,
      ["quantize", Self.llama, gptq, "--method", "gptq", "--tokens", Self.calibrationTokens] + mix)
    #expect(run.status == 0, "\(run.stderr)")
    #expect(try runProcess(swiftcompressExecutable, ["quantize", Self.llama, rtn] + mix).status == 0)
    let config = Self.json(try String(contentsOfFile: gptq + "/config.json", encoding: .utf8))
    let block = config["quantization_config"] as? [String: Any] ?? [:]
    #expect(block["format"] as? String == "mixed-precision")
    #expect((block["config_groups"] as? [String: Any])?.count == 3)
    let evaluation = fixture("golden/calibrated/evaluation-tokens.llama.jsonl")
    func kld(_ candidate: String) throws -> Double {
      let out = try swiftcompress("evaluate", Self.llama, candidate, "--tokens", evaluation, "--json")
      return ((Self.json(out.stdout)["decoder"] as? [String: Any])?["kld"] as? [String: Any])?["mean"] as? Double
        ?? .nan
    }
    let (calibrated, rounded) = (try kld(gptq), try kld(rtn))
    #expect(calibrated < rounded, "GPTQ \(calibrated) vs RTN \(rounded)")
  }
}
