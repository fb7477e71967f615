import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// The rows of the tables in docs/recipes.md's section `heading` (up to the next heading
/// of its level or above), each as its cells, header rows left out.
private func tableRows(under heading: String) -> [[String]] {
  func level(_ line: Substring) -> Int { line.prefix { $0 == "#" }.count }
  let headingLevel = level(heading[...])
  var rows: [[String]] = []
  var inside = false
  var header = true
  for line in recipesDoc.split(separator: "\n", omittingEmptySubsequences: false) {
    if line.hasPrefix("#") {
      if inside && level(line) <= headingLevel { break }
      inside = inside || line == heading
      continue
    }
    guard inside, line.hasPrefix("|") else {
      header = true  // the next table starts with its header
      continue
    }
    let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    if cells.first?.hasPrefix("---") == true { continue }
    if header {
      header = false
      continue
    }
    rows.append(cells)
  }
  return rows
}

/// The `backquoted` words of a table cell.
private func quoted(_ cell: String) -> [String] {
  cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map {
    String($0.element)
  }
}

private let recipesDoc: String = {
  (try? String(contentsOfFile: repositoryRoot + "/docs/recipes.md", encoding: .utf8)) ?? ""
}()

/// A valid value of every option, unlike its default, so that a key the configuration
/// ignored would come back as the default.
private let samples: [StageKind: [String: RecipeValue]] = [
  .prune: [
    "method": .scalar("wanda"), "sparsity": .scalar("0.25"), "scope": .scalar("global"), "pattern": .scalar("4:8"),
    "calibration": .scalar("stats.safetensors"), "seed": .scalar("7"), "sparse_format": .scalar("bitmask"),
    "structure": .scalar("heads"), "ratio": .scalar("0.5"), "norm": .scalar("l1"), "shrink": .scalar("true"),
    "ignore": .list(["lm_head", "re:.*gate_proj"]), "dampening": .scalar("0.05"), "block_size": .scalar("64"),
    "refit": .scalar("none"),
  ],
  .factorize: [
    "method": .scalar("lq"), "rank": .scalar("8"), "energy": .scalar("0.9"), "max_error": .scalar("0.2"),
    "ratio": .scalar("0.5"), "budget": .scalar("1000"), "model_ratio": .scalar("0.25"),
    "calibration": .scalar("stats.safetensors"), "oversampling": .scalar("5"), "power_iterations": .scalar("2"),
    "seed": .scalar("7"), "ignore": .list(["lm_head", "re:.*gate_proj"]),
  ],
  .quantize: [
    "scheme": .scalar("NVFP4A16"), "group_size": .scalar("32"), "scale_search": .scalar("mse"),
    "residual_rank": .scalar("8"), "residual_iterations": .scalar("5"), "ignore": .list(["lm_head", "re:.*gate_proj"]),
    "method": .scalar("gptq"), "dampening": .scalar("0.05"), "block_size": .scalar("64"), "actorder": .scalar("none"),
    "rotation_block": .scalar("32"),
    "refit": .scalar("none"), "scheme_for": .list(["mlp\\.down_proj=W8A16:g128", "layers\\.0\\.=keep"]),
    "target_bpw": .scalar("4.5"), "target_size": .scalar("1000000"),
    "candidates": .list(["NVFP4A16", "W8A16:g128", "keep"]),
    "statistics": .scalar("stats.safetensors"),
  ],
]

/// The other options a stage needs for `key` to be decoded: the required ones, and
/// residual_rank for residual_iterations.
private func required(_ kind: StageKind, for key: String) -> [String: RecipeValue] {
  switch kind {
  case .prune:
    key == "method"
      ? [:] : ["method": .scalar(["dampening", "block_size", "refit"].contains(key) ? "sparsegpt" : "magnitude")]
  case .factorize: RankRule.CodingKeys.allCases.map(\.stringValue).contains(key) ? [:] : ["rank": .scalar("16")]
  case .quantize:
    ["scheme": .scalar("W4A16")].merging(key == "residual_iterations" ? ["residual_rank": .scalar("4")] : [:]) {
      $1
    }.merging(["dampening", "block_size", "actorder", "refit"].contains(key) ? ["method": .scalar("gptq")] : [:]) { $1 }
      .merging(key == "candidates" ? ["target_bpw": .scalar("4.5")] : [:]) { $1 }
  }
}

@Suite("Recipe options")
struct RecipeOptionsTests {
  /// Every key docs/recipes.md documents for a stage kind decodes into the kind's
  /// configuration and encodes back to the same key and value; a documented key the
  /// configuration does not know, or a key it has that is not documented, fails.
  @Test(arguments: StageKind.allCases)
  func everyDocumentedKeyDecodesIntoTheConfigurationAndBack(_ kind: StageKind) throws {
    let documented = tableRows(under: "### \(kind.rawValue)").flatMap { quoted($0[0]) }
    try #require(!documented.isEmpty, "docs/recipes.md has no '### \(kind.rawValue)' table under '## Stage options'")
    let configurationType = kind.configurationType
    for key in documented where !configurationType.optionKeys.contains(key) {
      Issue.record("docs/recipes.md documents '\(key)' for \(kind.rawValue), which its configuration does not know")
    }
    for key in configurationType.optionKeys where !documented.contains(key) {
      Issue.record("\(kind.rawValue)'s '\(key)' is not documented in docs/recipes.md")
    }
    for key in documented {
      let value = try #require(samples[kind]?[key], "no sample value for \(kind.rawValue)'s '\(key)'")
      var options = required(kind, for: key).mapValues { RecipeOption($0) }
      options[key] = RecipeOption(value)
      let configuration = try RecipeOptionDecoder.decode(configurationType, from: options)
      let encoded = configuration.recipeOptions
      #expect(encoded[key]?.value == value, "\(kind.rawValue): \(key)")
      for written in encoded.keys where !documented.contains(written) {
        Issue.record("\(kind.rawValue) writes '\(written)', which docs/recipes.md does not document")
      }
      // And the pass the stage makes gives it back (the effective recipe).
      if let pass = try? configuration.pass() {
        #expect(pass.recipeStage?.recipeOptions[key]?.value == value, "\(kind.rawValue): \(key)")
        #expect(pass.recipeStage.map { type(of: $0).stageKind } == kind)
      }
    }
  }

  /// The keys an override may change are those docs/recipes.md lists.
  @Test func overrideKeysAreTheDocumentedOnes() {
    let rows = tableRows(under: "## Overrides")
    for kind in StageKind.allCases {
      let row = rows.first { $0.first == kind.rawValue }
      #expect(row.map { quoted($0[1]) } == kind.configurationType.overrideKeys, "\(kind.rawValue)")
    }
  }

  /// Each way a value can be wrong gives its message, at the key's line (the stage's when
  /// the key is missing).
  @Test(arguments: [
    ("quantize:\n      scheme: W4A16\n      group_size: x\n", "4: 'group_size': must be a whole number, not 'x'"),
    ("quantize:\n      scheme: [W4A16]\n", "3: 'scheme': must be a single value, not a list"),
    (
      "quantize:\n      scheme: W4A16\n      scale_search: max\n",
      "4: 'scale_search': 'max' is not allowed; allowed: none, mse"
    ),
    (
      "quantize:\n      scheme: W4A16\n      residual_iterations: 3\n",
      "4: 'residual_iterations': needs residual_rank (the rank of the low-rank part)"
    ),
    (
      "prune:\n      sparsity: 0.5\n",
      "2: 'method': is required; allowed: magnitude, nm, wanda, sparsegpt, random, structured"
    ),
    ("prune:\n      method: magnitude\n      sparsity: .nan\n", "4: 'sparsity': must be a number, not '.nan'"),
    (
      "prune:\n      method: random\n      sparsity: 0.5\n      seed: -1\n",
      "5: 'seed': must be a whole number >= 0, not '-1'"
    ),
    ("prune:\n      method: nm\n      pattern: 2-4\n", "4: 'pattern': must be N:M, such as '2:4', not '2-4'"),
    (
      "prune:\n      method: structured\n      structure: mlp\n      ratio: 0.5\n      shrink: yes\n",
      "6: 'shrink': must be true or false, not 'yes'"
    ),
    (
      "prune:\n      method: wanda\n      sparsity: 0.5\n",
      "2: 'prune': --calibration: wanda in a recipe needs a calibration-statistics file (calibration: FILE from 'swiftcompress calibrate')"
    ),
    (
      "factorize:\n      method: svd\n",
      "2: 'rank': give exactly one rank rule of rank, energy, max_error, ratio, budget, model_ratio (0 given)"
    ),
    ("factorize:\n      rank: 0\n", "3: 'rank': 0 must be at least 1"),
    ("factorize:\n      rank: 4\n      calibration: [a, b]\n", "4: 'calibration': must be a single value, not a list"),
  ])
  func valueErrorsNameTheKeyAndLine(_ stage: String, _ message: String) throws {
    let recipe = try Recipe.parse("stages:\n  - " + stage, file: "v.yaml")
    #expect {
      _ = try RecipePass(configuration: recipe)
    } throws: { error in
      (error as? SwiftCompressError)?.errorDescription == "v.yaml:\(message)."
    }
  }

  /// Options left out take the configuration's defaults, and the effective recipe writes them.
  @Test func leftOutOptionsAreTheConfigurationDefaults() throws {
    let quantize = try RecipeOptionDecoder.decode(
      QuantizeStageConfiguration.self, from: ["scheme": RecipeOption(.scalar("w4a16"))])
    #expect(quantize.quantize == QuantizePass.Configuration(scheme: .w4a16))
    #expect(
      quantize.recipeOptions.mapValues(\.value) == [
        "scheme": .scalar("W4A16"), "group_size": .scalar("128"), "ignore": .list(["lm_head"]),
        "scale_search": .scalar("none"),
      ])
    let prune = try RecipeOptionDecoder.decode(
      PrunePass.Configuration.self, from: ["method": RecipeOption(.scalar("wanda"))])
    #expect(prune == PrunePass.Configuration(method: .wanda))
    #expect(prune.scope == .row)
    let factorize = try RecipeOptionDecoder.decode(
      FactorizePass.Configuration.self, from: ["energy": RecipeOption(.scalar("0.5"))])
    #expect(factorize == FactorizePass.Configuration(rank: .energy(0.5)))
    #expect(factorize.recipeOptions["power_iterations"]?.value == .scalar("\(FactorizePass.defaultPowerIterations)"))
  }

  /// A configuration's JSON (reports, manifests, the pass registry) keeps its own
  /// shape: camelCase keys and the rank rule as one nested key.
  @Test func jsonKeepsItsShape() throws {
    let configuration = FactorizePass.Configuration(method: .rsvd, rank: .maxError(0.2), powerIterations: 2)
    let json = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
    #expect(json.contains(#""rank":{"max_error":0.2}"#) && json.contains(#""powerIterations":2"#), "\(json)")
    #expect(try JSONDecoder().decode(FactorizePass.Configuration.self, from: Data(json.utf8)) == configuration)
    let quantize = QuantizePass.Configuration(scheme: .w4a16, groupSize: 32, scaleSearch: .mse)
    let text = String(decoding: try JSONEncoder().encode(quantize), as: UTF8.self)
    #expect(text.contains(#""groupSize":32"#) && text.contains(#""scaleSearch":"mse""#), "\(text)")
  }
}

@Suite("Recipe evaluate block")
struct RecipeEvaluationTests {
  /// docs/recipes.md lists exactly the keys the evaluate: block reads.
  @Test func documentedKeysAreTheReadOnes() {
    let documented = tableRows(under: "## Evaluation after the run").flatMap { quoted($0[0]) }
    #expect(documented == RecipeEvaluation.keys)
  }

  /// Every key decodes, and the written recipe reads back the same.
  @Test func parsesAndRoundTrips() throws {
    let text = """
      stages:
        - quantize: {scheme: W4A16}
      evaluate:
        tokens: ids.jsonl
        samples: 8
        seed: 3
        seq_len: 16
        pack: true
        batch_tokens: 64
        max_kld: 0.05
        min_top1: 0.9
      """
    let recipe = try Recipe.parse(text)
    let evaluate = try #require(recipe.evaluate)
    #expect(evaluate.tokens == "ids.jsonl" && evaluate.data == nil)
    #expect(evaluate.sampling == SamplingOptions(samples: 8, seed: 3, seqLen: 16, pack: true))
    #expect(evaluate.batchTokens == 64 && evaluate.gates == EvaluationGates(maxKLD: 0.05, minTop1: 0.9))
    #expect(try Recipe.parse(recipe.yamlText()).evaluate == evaluate)
    let json = try JSONEncoder().encode(recipe)
    #expect(try JSONDecoder().decode(Recipe.self, from: json).evaluate == evaluate)
  }

  @Test(arguments: [
    ("evaluate:\n  samples: 3\n", "'data' (a text file) or 'tokens'"),
    ("evaluate:\n  data: a.txt\n  tokens: b.jsonl\n", "'data' (a text file) or 'tokens'"),
    ("evaluate:\n  data: a.txt\n  pack: true\n", "needs seq_len"),
    ("evaluate:\n  data: a.txt\n  max_kld: lots\n", "must be a number"),
    ("evaluate:\n  data: a.txt\n  min_top1: 2\n", "[0, 1]"),
    ("evaluate:\n  data: a.txt\n  perplexity: 3\n", "perplexity"),
  ])
  func errorsNameTheProblem(_ block: String, _ fragment: String) {
    do {
      _ = try Recipe.parse("stages:\n  - quantize: {scheme: W4A16}\n" + block)
      Issue.record("parsed: \(block)")
    } catch {
      #expect(error.errorDescription?.contains(fragment) == true, "\(error.errorDescription ?? "")")
    }
  }
}
