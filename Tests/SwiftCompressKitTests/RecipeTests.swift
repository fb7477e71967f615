import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// Every float tensor of a checkpoint, by name.
private func denseTensors(_ path: String) throws -> [String: [Float]] {
  let checkpoint = try Checkpoint.open(path)
  var values: [String: [Float]] = [:]
  for tensor in checkpoint.tensors where tensor.info.dtype.isFloatingPoint {
    values[tensor.name] = Float32Conversion.floats(
      checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
  }
  return values
}

/// sqrt(sum (a - b)^2 / sum a^2) over the named tensors, in Float64.
private func relativeError(_ reference: [String: [Float]], _ other: [String: [Float]], names: [String]) -> Double {
  var error = 0.0
  var energy = 0.0
  for name in names {
    guard let a = reference[name], let b = other[name], a.count == b.count else { return .nan }
    for (x, y) in zip(a, b) {
      error += (Double(x) - Double(y)) * (Double(x) - Double(y))
      energy += Double(x) * Double(x)
    }
  }
  return (error / energy).squareRoot()
}

@Suite("Recipes")
struct RecipeTests {
  let llama = fixture("tiny-llama-f32")

  func options(_ input: String, _ output: String, recipe: Recipe? = nil, gates: QualityGates = QualityGates())
    throws -> CompressionOptions
  {
    CompressionOptions(
      input: input, output: output, selection: try TensorSelection(), command: "test", gates: gates, recipe: recipe)
  }

  func run(_ yaml: String, _ input: String, _ output: String) throws -> Report {
    let recipe = try Recipe.parse(yaml, file: "test.yaml")
    return try Compressor.run(pass: try RecipePass(configuration: recipe), options: try options(input, output))
  }

  // MARK: - Parsing and errors

  @Test func parsesStagesOptionsOverridesAndGatesWithLines() throws {
    let recipe = try Recipe.parse(
      """
      stages:
        - prune:
            method: nm
            pattern: "2:4"
            targets: [Linear, 'q_proj']
            overrides:
              - targets: ['layers\\.0\\.']
                skip: true
        - quantize:
            scheme: NVFP4
      gates:
        max_error: 0.3
        min_ratio: 2
      """, file: "r.yaml")
    #expect(recipe.stages.map(\.kind) == [.prune, .quantize])
    #expect(recipe.stages[0].targets == ["Linear", "q_proj"])
    #expect(recipe.stages[0].options["pattern"] == RecipeOption(.scalar("2:4"), line: 4))
    #expect(recipe.stages[0].overrides.first?.skip == true)
    #expect(recipe.stages[1].line == 9)
    #expect(recipe.gates == QualityGates(maxError: 0.3, minRatio: 2))
  }

  /// A recipe error names the file, the line and the key, and lists what is allowed.
  @Test(arguments: [
    ("stages:\n  - quantize:\n      scheme: W4A16\n      grup_size: 64\n", 4, "grup_size", "group_size"),
    ("stages:\n  - quantise:\n      scheme: W4A16\n", 2, "quantise", "prune, factorize, quantize"),
    ("stages:\n  - quantize:\n      scheme: W9A16\n", 3, "scheme", "W4A16"),
    ("stages:\n  - prune:\n      method: nm\n      scope: layer\n", 4, "scope", "tensor, row, global"),
    ("stages:\n  - prune:\n      method: magnitude\n      sparsity: half\n", 4, "sparsity", "a number"),
    ("stages:\n  - quantize:\n      group_size: 64\n", 2, "scheme", "W8A16"),
    ("stages: []\n", 1, "stages", "non-empty list"),
    ("stagez:\n  - quantize: {scheme: W4A16}\n", 1, "stagez", "stages, gates"),
    ("stages:\n  - factorize:\n      rank: 8\n      energy: 0.9\n", 3, "rank", "exactly one rank rule"),
    (
      "stages:\n  - quantize:\n      scheme: W4A16\n      overrides:\n        - targets: [q_proj]\n          dampening: 0.1\n",
      6, "dampening", "scale_search, scheme, group_size"
    ),
    ("gates:\n  max_error: lots\nstages:\n  - quantize: {scheme: W4A16}\n", 2, "max_error", "a number"),
    ("stages:\n  - prune:\n      method: magnitude\n      sparsity: 1.5\n", 4, "sparsity", "[0, 1)"),
    ("stages:\n  - prune:\n      method: nm\n      pattern: '4:2'\n", 4, "pattern", "1 <= N < M <= 32"),
  ])
  func recipeErrorsNameFileLineAndKey(_ yaml: String, _ line: Int, _ key: String, _ allowed: String) {
    do {
      let recipe = try Recipe.parse(yaml, file: "bad.yaml")
      _ = try RecipePass(configuration: recipe)
      Issue.record("no error for \(yaml)")
    } catch {
      let message = error.errorDescription ?? ""
      #expect(message.hasPrefix("bad.yaml:\(line): '\(key)'"), "\(message)")
      #expect(message.contains(allowed), "\(message)")
      #expect(error.category == .usage)
    }
  }

  @Test func invalidYAMLGivesItsLine() {
    #expect {
      _ = try Recipe.parse("stages:\n  - quantize: {scheme: W4A16\n", file: "broken.yaml")
    } throws: { error in
      guard case .invalidRecipe(let file, let line, _, let reason) = error as? SwiftCompressError else { return false }
      return file == "broken.yaml" && line >= 2 && reason.contains("YAML")
    }
  }

  /// Compositions that cannot be honoured are refused before anything is read.
  @Test(arguments: [
    "stages:\n  - quantize: {scheme: W4A16}\n  - prune: {method: magnitude, sparsity: 0.5, scope: global}\n",
    "stages:\n  - prune: {method: nm, pattern: '2:4'}\n  - factorize: {energy: 0.9}\n",
    "stages:\n  - prune: {method: nm, pattern: '2:4', sparse_format: bitmask}\n  - quantize: {scheme: NVFP4}\n",
    "stages:\n  - prune: {method: structured, structure: mlp, ratio: 0.25, shrink: true, targets: [Linear]}\n",
  ])
  func impossibleCompositionsAreRefused(_ yaml: String) throws {
    let recipe = try Recipe.parse(yaml, file: "c.yaml")
    #expect(throws: SwiftCompressError.self) { try RecipePass(configuration: recipe) }
  }

  // MARK: - Composition

  /// 2:4 then NVFP4 in one recipe writes the same bytes as prune then quantize run one
  /// after the other, and the pruned zeros are still zero once dequantized.
  @Test func pruneThenQuantizeEqualsTheTwoCommandsAndKeepsZeros() throws {
    let folder = TemporaryFolder()
    let report = try run(
      """
      stages:
        - prune: {method: nm, pattern: "2:4", targets: [Linear]}
        - quantize: {scheme: NVFP4, targets: [Linear]}
      """, llama, folder.file("chain"))
    _ = try Compressor.run(
      pass: try PrunePass(configuration: .init(method: .nm, pattern: NMPattern(n: 2, m: 4))),
      options: try options(llama, folder.file("pruned")))
    _ = try Compressor.run(
      pass: try QuantizePass(configuration: .init(scheme: .nvfp4)),
      options: try options(folder.file("pruned"), folder.file("quantized")))
    #expect(
      FileManager.default.contentsEqual(
        atPath: folder.file("chain/model.safetensors"), andPath: folder.file("quantized/model.safetensors")))
    // Zeros stay zeros: every pruned weight decodes to exactly 0.
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: try options(folder.file("chain"), folder.file("dense")))
    let pruned = try denseTensors(folder.file("pruned"))
    let decoded = try denseTensors(folder.file("dense"))
    var zeros = 0
    for entry in report.tensors where !entry.isKept {
      let (p, d) = (try #require(pruned[entry.name]), try #require(decoded[entry.name]))
      for i in p.indices where p[i] == 0 {
        #expect(d[i] == 0)
        zeros += 1
      }
      #expect(entry.sparsity?.patternHolds == true)
      #expect(entry.reason?.contains("prune") == true && entry.reason?.contains("NVFP4") == true)
    }
    #expect(zeros == report.totals.sparsity?.pruned)
    // The report's error is the whole chain's, against the input: the decoded weights say the same.
    let names = report.tensors.filter { !$0.isKept }.map(\.name)
    let measured = relativeError(try denseTensors(llama), decoded, names: names)
    let reported = try #require(report.totals.metrics?.relativeFrobeniusError)
    #expect(abs(measured - reported) <= 1e-3 * reported, "\(measured) vs \(reported)")
    // Bits per weight count every output tensor: packed codes, scales, global scales.
    for entry in report.tensors where !entry.isKept {
      #expect(entry.bytesAfter == entry.outputs.reduce(0) { $0 + $1.bytes })
      #expect(entry.outputs.contains { $0.name.hasSuffix("_global_scale") })
    }
  }

  /// factorize then quantize stores quantized factors; decompress multiplies the
  /// dequantized factors out in one run, giving back weights whose error is the one reported.
  @Test func factorizeThenQuantizeTheFactors() throws {
    let folder = TemporaryFolder()
    let report = try run(
      """
      stages:
        - factorize: {method: svd, rank: 32}
        - quantize: {scheme: W8A16, group_size: 32}
      """, llama, folder.file("fq"))
    let factorizedOnly = try run("stages:\n  - factorize: {method: svd, rank: 32}\n", llama, folder.file("f"))
    let q = try #require(report.tensors.first { $0.name == "model.layers.0.mlp.down_proj.weight" })
    #expect(
      Set(q.outputs.map(\.name)).isSuperset(of: [
        "model.layers.0.mlp.down_proj.weight_a_packed", "model.layers.0.mlp.down_proj.weight_b_packed",
        "model.layers.0.mlp.down_proj.weight_a_scale",
      ]))
    // Quantized factors are smaller than the float factors, and cost a little more error.
    #expect(report.totals.bytesAfter < factorizedOnly.totals.bytesAfter)
    let chainError = try #require(report.totals.metrics?.relativeFrobeniusError)
    let factorError = try #require(factorizedOnly.totals.metrics?.relativeFrobeniusError)
    #expect(chainError > factorError && chainError < factorError * 1.05)
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: try options(folder.file("fq"), folder.file("d")))
    let dense = try Checkpoint.open(folder.file("d"))
    #expect(Set(dense.tensors.map(\.name)) == Set(try Checkpoint.open(llama).tensors.map(\.name)))
    let config = try String(contentsOfFile: folder.file("d/config.json"), encoding: .utf8)
    #expect(!config.contains("quantization_config") && !config.contains(FactorizePass.configKey))
    let names = report.tensors.filter { !$0.isKept }.map(\.name)
    let measured = relativeError(try denseTensors(llama), try denseTensors(folder.file("d")), names: names)
    #expect(abs(measured - chainError) <= 1e-4 * chainError, "\(measured) vs \(chainError)")
  }

  /// W ~ Q + A B (LQ-LoRA): less error than plain quantization at the same scheme, the
  /// low-rank part counted in bits per weight, and decompress adds it back.
  @Test func lowRankPlusQuantizedResidual() throws {
    let folder = TemporaryFolder()
    let plain = try run("stages:\n  - quantize: {scheme: W4A16, group_size: 32}\n", llama, folder.file("q"))
    let report = try run(
      "stages:\n  - quantize: {scheme: W4A16, group_size: 32, residual_rank: 8, residual_iterations: 3}\n", llama,
      folder.file("lq"))
    let plainError = try #require(plain.totals.metrics?.relativeFrobeniusError)
    let error = try #require(report.totals.metrics?.relativeFrobeniusError)
    #expect(error < plainError * 0.9, "\(error) vs \(plainError)")
    for (entry, plainEntry) in zip(report.tensors, plain.tensors) where !entry.isKept {
      #expect(entry.outputs.contains { $0.name.hasSuffix(".lowrank_a") && $0.shape[1] == 8 })
      #expect(entry.bitsPerWeightAfter > plainEntry.bitsPerWeightAfter)
      #expect(entry.bytesAfter == entry.outputs.reduce(0) { $0 + $1.bytes })
    }
    let config = try String(contentsOfFile: folder.file("lq/config.json"), encoding: .utf8)
    #expect(config.contains(LowRankResidualPass.configKey) && config.contains("quantization_config"))
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: try options(folder.file("lq"), folder.file("d")))
    let names = report.tensors.filter { !$0.isKept }.map(\.name)
    let measured = relativeError(try denseTensors(llama), try denseTensors(folder.file("d")), names: names)
    #expect(abs(measured - error) <= 1e-4 * error, "\(measured) vs \(error)")
  }

  /// Structured pruning that cuts whole MLP neurons (weights and biases), then int8:
  /// every coupled tensor is cut, and the error counts the removed units.
  @Test func structuredShrinkThenQuantize() throws {
    let folder = TemporaryFolder()
    let bert = fixture("tiny-bert")
    let report = try run(
      """
      stages:
        - prune: {method: structured, structure: mlp, ratio: 0.25, shrink: true}
        - quantize: {scheme: W8A16, group_size: 64}
      """, bert, folder.file("o"))
    let single = try Compressor.run(
      pass: try PrunePass(configuration: .init(method: .structured, structure: .mlp, ratio: 0.25, shrink: true)),
      options: try options(bert, folder.file("p")))
    let output = try Checkpoint.open(folder.file("o"))
    let bias = try #require(output.tensor(named: "encoder.layer.0.intermediate.dense.bias"))
    #expect(bias.info.shape == [192])
    let packed = try #require(output.tensor(named: "encoder.layer.0.intermediate.dense.weight_packed"))
    #expect(packed.info.shape[0] == 192)
    #expect(report.totals.sparsity?.unitsRemoved == single.totals.sparsity?.unitsRemoved)
    // Each cut tensor costs what the cut costs alone (removed units count as zeros),
    // and int8 adds a little on top.
    var compared = 0
    for cut in single.tensors where !cut.isKept {
      let entry = try #require(report.tensors.first { $0.name == cut.name })
      let cutError = try #require(cut.metrics?.relativeFrobeniusError)
      let chainError = try #require(entry.metrics?.relativeFrobeniusError)
      #expect(
        chainError >= cutError * 0.999 && chainError < cutError * 1.01, "\(cut.name): \(chainError) vs \(cutError)")
      compared += 1
    }
    #expect(compared == 6)
  }

  // MARK: - Overrides and explain

  @Test func laterOverridesWinAndSkipKeepsTheTensor() throws {
    let folder = TemporaryFolder()
    let yaml = """
      stages:
        - prune:
            method: magnitude
            sparsity: 0.5
            overrides:
              - targets: ['mlp\\.']
                sparsity: 0.3
              - targets: ['down_proj']
                sparsity: 0.7
              - targets: ['layers\\.1\\.self_attn\\.q_proj']
                skip: true
      """
    let report = try run(yaml, llama, folder.file("o"))
    func sparsity(_ name: String) -> Double? {
      report.tensors.first { $0.name == name }?.sparsity?.achieved
    }
    #expect(abs((sparsity("model.layers.0.self_attn.k_proj.weight") ?? 0) - 0.5) < 1e-9)
    #expect(abs((sparsity("model.layers.0.mlp.up_proj.weight") ?? 0) - 0.3) < 1e-3)
    #expect(abs((sparsity("model.layers.0.mlp.down_proj.weight") ?? 0) - 0.7) < 1e-3)
    let skipped = try #require(report.tensors.first { $0.name == "model.layers.1.self_attn.q_proj.weight" })
    #expect(skipped.isKept && skipped.reason?.contains("override") == true)

    let pass = try RecipePass(configuration: try Recipe.parse(yaml, file: "o.yaml"))
    let explained = try Compressor.explain(pass: pass, options: try options(llama, folder.file("unused")))
    let lines = Dictionary(uniqueKeysWithValues: explained.map { ($0.tensor, $0.lines.joined(separator: "\n")) })
    let down = try #require(lines["model.layers.0.mlp.down_proj.weight"])
    #expect(down.contains("override 1 (line 6) matched 'mlp\\.': sparsity=0.3"))
    #expect(down.contains("override 2 (line 8) matched 'down_proj': sparsity=0.7"))
    #expect(down.contains("override 3 (line 10) did not match"))
    #expect(down.contains("-> model.layers.0.mlp.down_proj.weight F32[128, 384]"))
    #expect(lines["model.layers.1.self_attn.q_proj.weight"]?.contains("skipped by override") == true)
    #expect(lines["model.norm.weight"]?.contains("not applied: 1-D tensor") == true)
    #expect(lines["lm_head.weight"]?.contains("keeps lm_head.weight: ignored by 'lm_head'") == true)
    #expect(!FileManager.default.fileExists(atPath: folder.file("unused")))
  }

  @Test func targetsShorthandsAndExclude() throws {
    let folder = TemporaryFolder()
    let report = try run(
      """
      stages:
        - quantize:
            scheme: W8A16
            targets: [Embedding, 'o_proj']
            ignore: []
            exclude: ['layers\\.1\\.']
      """, llama, folder.file("o"))
    let transformed = Set(report.tensors.filter { !$0.isKept }.map(\.name))
    // Embedding tables are not linear layers: quantize itself keeps them, and says so.
    #expect(transformed == ["model.layers.0.self_attn.o_proj.weight"])
    let embed = try #require(report.tensors.first { $0.name == "model.embed_tokens.weight" })
    #expect(embed.reason?.contains("embedding") == true)
    let excluded = try #require(report.tensors.first { $0.name == "model.layers.1.self_attn.o_proj.weight" })
    #expect(excluded.reason?.contains("exclude") == true)
  }

  // MARK: - Dry run, gates, effective recipe

  /// A dry run plans exactly what the run writes, and writes nothing.
  @Test func dryRunPlansTheRunAndWritesNothing() throws {
    let folder = TemporaryFolder()
    let recipe = try Recipe.parse(
      "stages:\n  - prune: {method: nm, pattern: '2:4'}\n  - quantize: {scheme: W4A16}\n", file: "d.yaml")
    let pass = try RecipePass(configuration: recipe)
    let plan = try Compressor.dryRun(
      pass: pass, options: try options(llama, folder.file("out"), gates: QualityGates(maxError: 0.01, minRatio: 100)))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    // Only the size gates can be judged before running.
    #expect(plan.gates.map(\.gate) == ["min_ratio"])
    #expect(plan.gates.first?.passed == false)
    let report = try Compressor.run(pass: pass, options: try options(llama, folder.file("out")))
    #expect(plan.totals.bytesAfter == report.totals.bytesAfter)
    #expect(plan.tensors.map(\.outputs) == report.tensors.map(\.outputs))
  }

  @Test func gatesAreCheckedAndRecorded() throws {
    let folder = TemporaryFolder()
    let report = try Compressor.run(
      pass: try QuantizePass(configuration: .init(scheme: .w4a16)),
      options: try options(
        llama, folder.file("o"),
        gates: QualityGates(maxError: 0.01, minSQNR: 10, maxBitsPerWeight: 32, minRatio: 1.5)))
    #expect(report.gates.map(\.gate) == ["max_error", "min_sqnr", "max_bpw", "min_ratio"])
    #expect(report.gates.map(\.passed) == [false, true, true, true])
    #expect(!report.gatesPassed)
    let written = try JSONDecoder().decode(
      Report.self, from: try Data(contentsOf: URL(fileURLWithPath: folder.file("o/" + Report.jsonFileName))))
    #expect(written.gates == report.gates)
    let html = try String(contentsOfFile: folder.file("o/" + Report.htmlFileName), encoding: .utf8)
    #expect(html.contains("max_error 0.01: measured"))
  }

  /// The recipe written with a single-pass run reproduces it byte for byte.
  @Test func writtenRecipeReproducesTheRun() throws {
    let folder = TemporaryFolder()
    let pass = try PrunePass(
      configuration: .init(
        method: .wanda, sparsity: 0.5, calibration: fixture("golden/pruning/tiny-llama-calibration.safetensors")))
    let selection = try TensorSelection(exclude: ["layers\\.0\\.self_attn"])
    _ = try Compressor.run(
      pass: pass,
      options: CompressionOptions(
        input: llama, output: folder.file("a"), selection: selection, command: "prune",
        recipe: Recipe.singleStage(pass, selection: selection)))
    let written = try Recipe.load(folder.file("a/" + Recipe.fileName))
    #expect(written.stages.first?.options["scope"]?.value == .scalar("row"))
    _ = try Compressor.run(
      pass: try RecipePass(configuration: written), options: try options(llama, folder.file("b")))
    for file in ["model.safetensors", "config.json"] {
      #expect(FileManager.default.contentsEqual(atPath: folder.file("a/" + file), andPath: folder.file("b/" + file)))
    }
  }
}
