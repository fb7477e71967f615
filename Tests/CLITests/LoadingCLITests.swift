import Foundation
import TestSupport
import Testing

/// Issue 12's defects through the command line: each output says truthfully how it
/// loads, or refuses to load; nothing that matches nothing passes in silence.
/// (`make interop` loads the same outputs in transformers and compressed-tensors.)
@Suite("Outputs load where they say, through the CLI")
struct LoadingCLITests {
  func config(_ folder: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
  }

  func ignore(_ folder: String) throws -> [String] {
    (try config(folder)["quantization_config"] as? [String: Any])?["ignore"] as? [String] ?? []
  }

  /// Defects 1 and 4: a module left dense by --exclude is named in ignore, and verify
  /// finds the mismatch when it is not.
  @Test func excludedModulesAreIgnoredAndVerifyChecksIt() throws {
    let folder = TemporaryFolder()
    let out = folder.file("w4")
    let result = try swiftcompress(
      "quantize", fixture("tiny-llama-f32"), out, "--scheme", "W4A16", "--exclude", #"layers\.0\.mlp"#, "-q")
    #expect(result.status == 0, "\(result.stderr)")
    #expect(
      try ignore(out) == [
        "lm_head", "model.embed_tokens", "model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj",
        "model.layers.0.mlp.up_proj",
      ])
    let verified = try swiftcompress("verify", out)
    #expect(verified.status == 0 && verified.stdout.hasPrefix("ok:"), "\(verified)")
    #expect(verified.stderr.contains("note: quantization_config matches the tensors: 11 modules stored quantized"))
    // The same output with the ignore list as it used to be written.
    let broken = folder.file("broken")
    try FileManager.default.copyItem(atPath: out, toPath: broken)
    try FileManager.default.removeItem(atPath: broken + "/swiftcompress-manifest.json")
    var edited = try config(broken)
    var quantization = edited["quantization_config"] as? [String: Any] ?? [:]
    quantization["ignore"] = ["lm_head"]
    edited["quantization_config"] = quantization
    try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: broken + "/config.json"))
    let refused = try swiftcompress("verify", broken)
    #expect(refused.status == 65)
    #expect(refused.stdout.contains("3 problems") || refused.stdout.contains("3 problem(s)"), "\(refused.stdout)")
    #expect(refused.stdout.contains("tensor 'model.layers.0.mlp.up_proj.weight': stored unquantized"))
    #expect(refused.stdout.contains("[config-dense-target"))
  }

  /// Defect 2: the default FP8 output of a BERT names its LayerNorms and embeddings.
  @Test func defaultFP8OfABertIgnoresItsLayerNormsAndEmbeddings() throws {
    let folder = TemporaryFolder()
    let out = folder.file("fp8")
    #expect(try swiftcompress("quantize", fixture("tiny-bert-128"), out, "--scheme", "FP8_DYNAMIC", "-q").status == 0)
    let names = try ignore(out)
    for module in [
      "embeddings.LayerNorm", "embeddings.word_embeddings", "embeddings.position_embeddings",
      "encoder.layer.1.output.LayerNorm",
    ] {
      #expect(names.contains(module), "\(module) not in \(names)")
    }
    #expect(!names.contains { $0.hasPrefix("encoder.layer.0.attention.self") })
  }

  /// Defect 3: the layouts no standard loader reads send loaders to the guard.
  @Test(arguments: [
    ["factorize", "--method", "rsvd", "--rank", "8"],
    ["prune", "--method", "magnitude", "--sparsity", "0.5", "--sparse-format", "bitmask"],
  ])
  func layoutsNoLoaderReadsAreGuarded(_ command: [String]) throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    let result = try runProcess(
      swiftcompressExecutable, [command[0], fixture("tiny-bert-128"), out] + Array(command.dropFirst()))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("note: the output holds"), "\(result.stderr)")
    let written = try config(out)
    #expect(written["model_type"] as? String == "swiftcompress")
    #expect((written["swiftcompress_loader"] as? [String: Any])?["model_type"] as? String == "bert")
    #expect((written["auto_map"] as? [String: String])?["AutoModel"] == "swiftcompress_modeling.SwiftcompressModel")
    #expect(FileManager.default.fileExists(atPath: out + "/swiftcompress_modeling.py"))
    let verified = try swiftcompress("verify", out)
    #expect(verified.status == 0 && verified.stderr.contains("note: holds"), "\(verified)")
    let dense = folder.file("dense")
    #expect(try swiftcompress("decompress", out, dense, "-q").status == 0)
    #expect(try config(dense)["model_type"] as? String == "bert")
    #expect(!FileManager.default.fileExists(atPath: dense + "/swiftcompress_modeling.py"))
  }

  /// Defect 5: a single-file input says its output has no config.json, and decompress reads it.
  @Test func aSingleFileInputWarnsAndDecompresses() throws {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let result = try swiftcompress("quantize", fixture("tiny-llama-f32/model.safetensors"), out, "--scheme", "W4A16")
    #expect(result.status == 0)
    #expect(result.stderr.contains("warning: the input has no config.json"), "\(result.stderr)")
    let report = try String(contentsOfFile: out + "/swiftcompress-report.md", encoding: .utf8)
    #expect(report.contains("- warning: the input has no config.json"))
    let decompressed = try swiftcompress("decompress", out, folder.file("d"), "-q")
    #expect(decompressed.status == 0, "\(decompressed.stderr)")
    let diff = try swiftcompress("diff", out, folder.file("d"))
    #expect(diff.status == 0 && diff.stdout.contains("21 tensors compared (21 float, 0 exact), 21 equal, 0 differ"))
  }

  /// Defect 6: selections, targets and overrides that match nothing are named; --strict stops.
  @Test func whatMatchesNothingIsAWarningAndStrictStops() throws {
    let folder = TemporaryFolder()
    let loose = try swiftcompress(
      "quantize", fixture("tiny-llama-f32"), folder.file("a"), "--scheme", "W4A16", "--include", "zzz")
    #expect(loose.status == 0)
    #expect(loose.stderr.contains("warning: --include 'zzz' matches no tensor of the input"))
    #expect(loose.stderr.contains("warning: quantize changed no tensor"))
    let strict = try swiftcompress(
      "quantize", fixture("tiny-llama-f32"), folder.file("b"), "--scheme", "W4A16", "--include", "zzz", "--strict")
    #expect(strict.status == 65 && strict.stdout.isEmpty)
    #expect(strict.stderr.contains("--strict: stopped before writing anything"))
    #expect(!FileManager.default.fileExists(atPath: folder.file("b")))
    // The docs' LQ-LoRA recipe skips `layers\.0\.`, which a BERT does not have.
    let recipe = repositoryRoot + "/docs/examples/recipes/lqlora-w4.yaml"
    let run = try swiftcompress("run", recipe, fixture("tiny-bert-128"), folder.file("c"), "--dry-run")
    #expect(
      run.stderr.contains(
        "lqlora-w4.yaml:11: stage 1 (quantize): override 1 (targets 'layers\\.0\\.') matches no tensor"),
      "\(run.stderr)")
    let targets = folder.file("t.yaml")
    try "stages:\n  - quantize:\n      scheme: W8A16\n      targets: ['doesnotexist']\n".write(
      toFile: targets, atomically: true, encoding: .utf8)
    let none = try swiftcompress("run", targets, fixture("tiny-llama-f32"), folder.file("d"), "--strict")
    #expect(none.status == 65)
    #expect(none.stderr.contains("t.yaml:2: stage 1 (quantize): targets entry 'doesnotexist' matches no tensor"))
  }
}
