import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// How a selection leaves some linear weights unquantized.
enum MixedSelection: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case exclude, include, recipeTargets, recipeExclude, recipeSkip

  var testDescription: String { rawValue }
}

/// What an output promises its loaders, derived from the tensors written (issue 12). The
/// expectations are recomputed here from the output's tensor names and dtypes, with
/// compressed-tensors' matching rules (an ignore entry is an exact module name, or `re:`
/// and a regular expression matched from the start), not with the code under test.
@Suite("Config from what is stored")
struct LoaderContractTests {
  static let models: [(fixture: String, mlp: String, attention: String, layer: String)] = [
    ("tiny-llama-f32", #"layers\.0\.mlp"#, "self_attn", #"layers\.1\."#),
    ("tiny-bert-128", #"layer\.0\.(intermediate|output)\."#, "attention", #"layer\.1\."#),
  ]

  static let cases: [(String, QuantizationScheme, MixedSelection)] = models.flatMap { model in
    QuantizationScheme.allCases.flatMap { scheme in MixedSelection.allCases.map { (model.fixture, scheme, $0) } }
  }

  /// Runs `scheme` over `model` with the mixed `selection` into `out`.
  static func quantize(_ model: String, _ scheme: QuantizationScheme, _ selection: MixedSelection, into out: String)
    throws -> Report
  {
    let m = models.first { $0.fixture == model }!
    func recipe(_ extra: String) throws -> RecipePass {
      try RecipePass(
        configuration: try Recipe.parse(
          "stages:\n  - quantize:\n      scheme: \(scheme.rawValue)\n\(extra)", file: "mixed.yaml"))
    }
    let pass: any CompressionPass
    var include: [String] = []
    var exclude: [String] = []
    switch selection {
    case .exclude:
      pass = try QuantizePass(configuration: .init(scheme: scheme))
      exclude = [m.mlp]
    case .include:
      pass = try QuantizePass(configuration: .init(scheme: scheme))
      include = [m.attention]
    case .recipeTargets: pass = try recipe("      targets: ['\(m.attention)']\n")
    case .recipeExclude: pass = try recipe("      exclude: ['\(m.layer)']\n")
    case .recipeSkip: pass = try recipe("      overrides:\n        - targets: ['\(m.mlp)']\n          skip: true\n")
    }
    return try Compressor.run(
      pass: pass,
      options: CompressionOptions(
        input: fixture(model), output: out, selection: try TensorSelection(include: include, exclude: exclude),
        command: "quantize"))
  }

  /// compressed-tensors' `match_name`: exact, or `re:` + a regex matched from the start.
  static func matches(_ entry: String, _ module: String) -> Bool {
    guard entry.hasPrefix("re:") else { return entry == module }
    return (try? Regex(String(entry.dropFirst(3)))).map { (try? $0.prefixMatch(in: module)) != nil } ?? false
  }

  @Test(arguments: cases)
  func ignoreNamesEveryModuleStoredUnquantized(
    _ model: String, _ scheme: QuantizationScheme, _ selection: MixedSelection
  )
    throws
  {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let report = try Self.quantize(model, scheme, selection, into: out)
    let checkpoint = try Checkpoint.open(out)
    let names = Set(checkpoint.tensors.map(\.name))
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))))
    let ignore = (config["quantization_config"]?["ignore"]?.arrayValue ?? []).compactMap(\.stringValue)
    // Stored unquantized: a float `.weight` of 16 or 32 bits without a `.weight_scale`.
    let dense = checkpoint.tensors.filter {
      $0.name.hasSuffix(".weight") && [.f32, .f16, .bf16].contains($0.info.dtype)
        && !names.contains($0.name + "_scale")
    }.map { String($0.name.dropLast(".weight".count)) }
    let quantized = names.filter { $0.hasSuffix(".weight_scale") }.map { String($0.dropLast(".weight_scale".count)) }
    #expect(!quantized.isEmpty && dense.count > 5, "the selection leaves some modules of each kind")
    // Norms stay out of ignore unless the quantized weight keeps the name `weight` (FP8).
    let listed = dense.filter { scheme.keepsWeightName || !$0.hasSuffix("norm") }
    let unlisted = listed.filter { module in !ignore.contains { Self.matches($0, module) } }
    #expect(unlisted.isEmpty, "stored unquantized but not in ignore: \(unlisted)")
    let wronglyIgnored = quantized.filter { module in ignore.contains { Self.matches($0, module) } }
    #expect(wronglyIgnored.isEmpty, "stored quantized but ignored: \(wronglyIgnored)")
    #expect(ignore.first == "lm_head" || model.contains("bert"), "the user's entries come first")
    let verified = try VerificationReport.verify(out)
    #expect(verified.problems.isEmpty, "\(verified.problems)")
    #expect(report.warnings.isEmpty, "\(report.warnings)")
  }

  /// Defect 2: a default FP8 output names the embeddings and norms a name-based reader
  /// would otherwise take for FP8 weights.
  @Test(arguments: [
    ("tiny-bert-128", ["embeddings.LayerNorm", "embeddings.word_embeddings"]),
    ("tiny-llama-f32", ["model.embed_tokens", "model.layers.0.input_layernorm", "model.norm"]),
  ])
  func defaultFP8OutputsNameTheModulesANameBasedReaderWouldDecode(_ model: String, _ expected: [String]) throws {
    for scheme in [QuantizationScheme.fp8Dynamic, .fp8Block] {
      let folder = TemporaryFolder()
      _ = try Compressor.run(
        pass: try QuantizePass(configuration: .init(scheme: scheme)),
        options: CompressionOptions(
          input: fixture(model), output: folder.file("q"), selection: try TensorSelection(), command: "quantize"))
      let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("q/config.json")))))
      let ignore = (config["quantization_config"]?["ignore"]?.arrayValue ?? []).compactMap(\.stringValue)
      for module in expected { #expect(ignore.contains(module), "\(scheme): \(module) missing from \(ignore)") }
    }
  }

  /// A copy of `source` whose config.json `edit` changes (its manifest dropped).
  static func edited(_ source: String, into target: String, _ edit: (JSONValue) -> JSONValue) throws {
    try FileManager.default.copyItem(atPath: source, toPath: target)
    try FileManager.default.removeItem(atPath: target + "/swiftcompress-manifest.json")
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: target + "/config.json"))))
    try JSONText.pretty(edit(config)).write(toFile: target + "/config.json", atomically: true, encoding: .utf8)
  }

  static func settingQuantization(_ config: JSONValue, _ key: String, _ value: JSONValue) -> JSONValue {
    config.setting("quantization_config", to: config["quantization_config"]!.setting(key, to: value)!)!
  }

  @Test func verifyReportsEveryMismatchBetweenConfigAndTensors() throws {
    let folder = TemporaryFolder()
    let w4 = folder.file("w4")
    _ = try Self.quantize("tiny-llama-f32", .w4a16, .exclude, into: w4)
    let fp8 = folder.file("fp8")
    _ = try Self.quantize("tiny-llama-f32", .fp8Dynamic, .exclude, into: fp8)
    func rules(_ path: String) throws -> Set<String> {
      Set(try VerificationReport.verify(path).problems.map(\.rule.rawValue))
    }
    #expect(try rules(w4).isEmpty)
    #expect(try rules(fp8).isEmpty)
    // The ignore list as it was before issue 12: only the user's entries.
    try Self.edited(w4, into: folder.file("a")) { Self.settingQuantization($0, "ignore", .array([.string("lm_head")])) }
    let dense = try VerificationReport.verify(folder.file("a")).problems
    #expect(Set(dense.map(\.rule)) == [.configDenseTarget])
    // Not the embedding: transformers does not take it for a Linear target, and W4A16's
    // model-free reader looks for weight_packed, so an unlisted embedding breaks neither.
    #expect(
      Set(dense.compactMap(\.tensor)) == [
        "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
      ])
    // FP8 with the reference's ignore list: the norms stop the model-free dequantizer.
    try Self.edited(fp8, into: folder.file("b")) {
      Self.settingQuantization(
        $0, "ignore",
        .array([.string("lm_head"), .string("re:.*embed_tokens.*"), .string(#"re:model\.layers\.0\.mlp\..*"#)]))
    }
    let norms = try VerificationReport.verify(folder.file("b")).problems
    #expect(Set(norms.map(\.rule)) == [.configDenseTarget])
    #expect(norms.count == 5 && norms.allSatisfy { $0.tensor?.hasSuffix("norm.weight") == true })
    // A quantized module listed in ignore, and one no group targets.
    try Self.edited(w4, into: folder.file("c")) { config in
      let ignore = config["quantization_config"]!["ignore"]!.arrayValue! + [.string("model.layers.1.self_attn.q_proj")]
      return Self.settingQuantization(config, "ignore", .array(ignore))
    }
    #expect(try rules(folder.file("c")) == ["config-ignored-quantized"])
    try Self.edited(w4, into: folder.file("d")) { config in
      let groups = config["quantization_config"]!["config_groups"]!
      let group = groups["W4A16"]!.setting("targets", to: .array([.string(#"re:model\.layers\.0\.mlp\..*"#)]))!
      return Self.settingQuantization(config, "config_groups", groups.setting("W4A16", to: group)!)
    }
    #expect(try rules(folder.file("d")) == ["config-ignored-quantized"])
    // The group size the scales do not have.
    try Self.edited(w4, into: folder.file("e")) { config in
      let groups = config["quantization_config"]!["config_groups"]!
      let weights = groups["W4A16"]!["weights"]!.setting("group_size", to: .number("64"))!
      return Self.settingQuantization(
        config, "config_groups", groups.setting("W4A16", to: groups["W4A16"]!.setting("weights", to: weights)!)!)
    }
    let layout = try VerificationReport.verify(folder.file("e")).problems
    #expect(Set(layout.map(\.rule)) == [.configLayout] && layout.count == 11)
  }

  @Test func theReferencesOwnOutputsVerifyButFP8WithItsNormsUnlisted() throws {
    for scheme in QuantizationScheme.allCases {
      let report = try VerificationReport.verify(fixture("golden/quantization/tiny-llama-bf16/\(scheme.rawValue)"))
      if scheme.keepsWeightName {
        // llm-compressor leaves the norms out of ignore; compressed-tensors' model-free
        // dequantizer then stops at model.layers.0.input_layernorm.weight_scale.
        #expect(Set(report.problems.map(\.rule)) == [.configDenseTarget] && report.problems.count == 5)
      } else {
        #expect(report.problems.isEmpty, "\(scheme): \(report.problems)")
        #expect(report.notes.contains { $0.hasPrefix("quantization_config matches the tensors: 14 modules") })
      }
    }
  }

  /// The outputs no standard loader reads, each with how it was made.
  static let guardedLayouts: [(String, String)] = [
    ("factorized weights", "stages:\n  - factorize:\n      method: svd\n      rank: 16\n"),
    (
      "a low-rank residual",
      "stages:\n  - quantize:\n      scheme: W4A16\n      group_size: 32\n      residual_rank: 4\n      residual_iterations: 1\n"
    ),
    (
      "bitmask-sparse weights",
      "stages:\n  - prune:\n      method: nm\n      pattern: '2:4'\n      sparse_format: bitmask\n"
    ),
    (
      "quantized factorized weights",
      "stages:\n  - factorize:\n      method: svd\n      rank: 32\n  - quantize:\n      scheme: W8A16\n      group_size: 0\n"
    ),
  ]

  @Test(arguments: guardedLayouts)
  func layoutsNoStandardLoaderReadsAreGuardedAndDecompressRestoresTheConfig(_ layout: String, _ yaml: String) throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    let report = try Compressor.run(
      pass: try RecipePass(configuration: try Recipe.parse(yaml, file: "r.yaml")),
      options: CompressionOptions(
        input: fixture("tiny-llama-f32"), output: out, selection: try TensorSelection(), command: "run"))
    let input = try JSONParser.parse(
      Array(try Data(contentsOf: URL(fileURLWithPath: fixture("tiny-llama-f32/config.json")))))
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))))
    #expect(config["model_type"] == .string("swiftcompress"))
    #expect(config["architectures"] == .array([.string("SwiftcompressForCausalLM")]))
    #expect(config["auto_map"]?["AutoModelForCausalLM"] == .string("swiftcompress_modeling.SwiftcompressForCausalLM"))
    let record = config["swiftcompress_loader"]
    #expect(record?["model_type"] == input["model_type"] && record?["architectures"] == input["architectures"])
    #expect(record?["layouts"] == .array([.string(layout)]))
    let modeling = try String(contentsOfFile: out + "/swiftcompress_modeling.py", encoding: .utf8)
    #expect(modeling.contains("ORIGINAL_MODEL_TYPE = \"llama\""))
    #expect(
      report.notes.contains { $0.contains(layout) } && report.output.editedFiles.contains("swiftcompress_modeling.py"))
    #expect(try VerificationReport.verify(out).problems.isEmpty)
    // Without the guard, verify says the layout would load with weights missing.
    try Self.edited(out, into: folder.file("unguarded")) { LoaderGuard.restored($0) }
    #expect(try VerificationReport.verify(folder.file("unguarded")).problems.map(\.rule).contains(.layoutUnguarded))
    // decompress puts the original back and drops the modeling file.
    let dense = folder.file("dense")
    let decompressed = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(input: out, output: dense, selection: try TensorSelection(), command: "decompress"))
    let restored = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dense + "/config.json"))))
    #expect(restored == input)
    #expect(!FileManager.default.fileExists(atPath: dense + "/swiftcompress_modeling.py"))
    #expect(!decompressed.output.copiedFiles.contains("swiftcompress_modeling.py"))
    #expect(try VerificationReport.verify(dense).notes.isEmpty)
  }

  /// The modeling file is valid Python (transformers runs it; `make interop` loads it).
  @Test func theModelingFileCompiles() throws {
    guard let python = referencePython else { return }
    let folder = TemporaryFolder()
    let path = folder.file("swiftcompress_modeling.py")
    try LoaderGuard.modelingSource(originalModelType: "bert").write(toFile: path, atomically: true, encoding: .utf8)
    let result = try runProcess(python, ["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", path])
    #expect(result.status == 0, "\(result.stderr)")
  }

  /// Defect 5: without config.json the records travel in __metadata__, and decompress and
  /// diff read them.
  @Test(arguments: [QuantizationScheme.w4a16, .nvfp4, .fp8Block])
  func aSingleFileInputCarriesItsRecordInMetadata(_ scheme: QuantizationScheme) throws {
    let folder = TemporaryFolder()
    let pass = try QuantizePass(configuration: .init(scheme: scheme))
    func run(_ pass: any CompressionPass, _ input: String, _ output: String) throws -> Report {
      try Compressor.run(
        pass: pass,
        options: CompressionOptions(input: input, output: output, selection: try TensorSelection(), command: "x"))
    }
    let single = try run(pass, fixture("tiny-llama-f32/model.safetensors"), folder.file("single"))
    _ = try run(pass, fixture("tiny-llama-f32"), folder.file("folder"))
    #expect(!FileManager.default.fileExists(atPath: folder.file("single/config.json")))
    #expect(single.warnings.contains { $0.contains("no config.json") && $0.contains("quantization_config") })
    let metadata = try Checkpoint.open(folder.file("single")).metadata?["quantization_config"]
    let recorded = try JSONParser.parse(Array((metadata ?? "").utf8))
    let written = try JSONParser.parse(
      Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("folder/config.json")))))
    #expect(recorded == written["quantization_config"])
    _ = try run(try DecompressPass(), folder.file("single"), folder.file("single-dense"))
    _ = try run(try DecompressPass(), folder.file("folder"), folder.file("folder-dense"))
    let a = try Checkpoint.open(folder.file("single-dense"))
    let b = try Checkpoint.open(folder.file("folder-dense"))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    for tensor in a.tensors {
      #expect(Array(a.bytes(of: tensor)) == Array(b.bytes(of: b.tensor(named: tensor.name)!)), "\(tensor.name)")
    }
    #expect(a.metadata?["quantization_config"] == nil, "the dense output no longer claims to be quantized")
    let diff = try CheckpointDiff.compare(folder.file("single"), folder.file("folder"))
    #expect(diff.totals.compared == 21 && diff.totals.differing == 0 && diff.onlyInA.isEmpty && diff.onlyInB.isEmpty)
    #expect(try VerificationReport.verify(folder.file("single")).problems.isEmpty)
  }

  /// Decompressing part of a checkpoint keeps its records, with the modules made dense in ignore.
  @Test func aPartialDecompressKeepsTheConfigTrue() throws {
    let folder = TemporaryFolder()
    _ = try Self.quantize("tiny-llama-f32", .w4a16, .include, into: folder.file("q"))
    _ = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(
        input: folder.file("q"), output: folder.file("part"),
        selection: try TensorSelection(include: [#"layers\.0\."#]),
        command: "decompress"))
    let config = try JSONParser.parse(
      Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("part/config.json")))))
    let ignore = (config["quantization_config"]?["ignore"]?.arrayValue ?? []).compactMap(\.stringValue)
    #expect(ignore.contains("model.layers.0.self_attn.q_proj") && !ignore.contains("model.layers.1.self_attn.q_proj"))
    #expect(try VerificationReport.verify(folder.file("part")).problems.isEmpty)
  }
}

/// Nothing silent: selections that match nothing are warnings, and `--strict` stops on them.
@Suite("Selections that match nothing")
struct SelectionWarningTests {
  static func plan(
    _ pass: any CompressionPass, _ model: String = "tiny-llama-f32", include: [String] = [], exclude: [String] = []
  )
    throws -> CompressionPlan
  {
    let checkpoint = try Checkpoint.open(fixture(model))
    return try Compressor.plan(
      checkpoint, pass: try pass.prepared(for: checkpoint),
      options: CompressionOptions(
        input: fixture(model), output: "/nonexistent",
        selection: try TensorSelection(include: include, exclude: exclude),
        command: "test"))
  }

  @Test func patternsAndIgnoreEntriesThatMatchNothingAreNamed() throws {
    let quantize = try QuantizePass(
      configuration: .init(scheme: .w4a16, ignore: ["lm_head", "re:.*nothing.*", "model.layers.0.mlp.up_proj"]))
    let plan = try Self.plan(quantize, include: ["zzz", "mlp"], exclude: ["qqq"])
    #expect(plan.warnings.contains("--include 'zzz' matches no tensor of the input"))
    #expect(plan.warnings.contains("--exclude 'qqq' matches no tensor of the input"))
    #expect(plan.warnings.contains("ignore entry 're:.*nothing.*' matches no module of the input"))
    #expect(plan.warnings.count == 3, "\(plan.warnings)")
    // The default lm_head on a model without one is not worth a warning.
    #expect(try Self.plan(try QuantizePass(configuration: .init(scheme: .w8a16)), "tiny-bert-128").warnings.isEmpty)
    // A selection that leaves nothing to do says so.
    #expect(try Self.plan(quantize, include: ["zzz"]).warnings.contains { $0.contains("changed no tensor") })
  }

  @Test func recipeTargetsExcludesAndOverridesThatMatchNothingNameTheirLine() throws {
    let yaml = """
      stages:
        - quantize:
            scheme: W4A16
            targets: ['doesnotexist', 'attention']
            exclude: ['nothing\\.here']
            ignore: [lm_head, vision_tower]
            overrides:
              - targets: ['layers\\.0\\.']
                skip: true
              - targets: ['embed_tokens']
                scale_search: mse
      """
    let pass = try RecipePass(configuration: try Recipe.parse(yaml, file: "mixed.yaml"))
    let plan = try Self.plan(pass, "tiny-bert-128")
    #expect(
      plan.warnings.contains(
        "mixed.yaml:2: stage 1 (quantize): targets entry 'doesnotexist' matches no tensor of the input"))
    #expect(
      plan.warnings.contains(
        "mixed.yaml:2: stage 1 (quantize): exclude entry 'nothing\\.here' matches no tensor of the input"))
    #expect(
      plan.warnings.contains(
        "mixed.yaml:2: stage 1 (quantize): ignore entry 'vision_tower' matches no module of the input"))
    #expect(plan.warnings.contains { $0.hasPrefix("mixed.yaml:8: stage 1 (quantize): override 1") })
    // The embedding is not a tensor the stage takes (its targets do not match it).
    #expect(plan.warnings.contains { $0.hasPrefix("mixed.yaml:10: stage 1 (quantize): override 2") })
    #expect(plan.warnings.count == 5, "\(plan.warnings.joined(separator: "\n"))")
  }

  @Test func strictStopsOnWarningsBeforeWriting() throws {
    let folder = TemporaryFolder()
    var options = CompressionOptions(
      input: fixture("tiny-llama-f32"), output: folder.file("q"), selection: try TensorSelection(include: ["zzz"]),
      command: "quantize")
    options.strict = true
    #expect(throws: SwiftCompressError.self) {
      _ = try Compressor.run(pass: try QuantizePass(configuration: .init(scheme: .w4a16)), options: options)
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    options.selection = try TensorSelection(include: ["mlp"])
    _ = try Compressor.run(pass: try QuantizePass(configuration: .init(scheme: .w4a16)), options: options)
    #expect(FileManager.default.fileExists(atPath: folder.file("q/config.json")))
  }
}
