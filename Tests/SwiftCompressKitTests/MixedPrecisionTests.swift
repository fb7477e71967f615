import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// Several schemes in one checkpoint (`--scheme-for`, recipe overrides, the allocator), read
/// back by `decompress`; the multiple-choice knapsack against brute force.
@Suite("Mixed precision")
struct MixedPrecisionTests {
  static let ignore = ["lm_head", "re:.*embed_tokens.*"]

  func quantize(_ configuration: QuantizePass.Configuration, _ model: String, to out: String) throws -> Report {
    try Compressor.run(
      pass: try QuantizePass(configuration: configuration),
      options: CompressionOptions(
        input: fixture(model), output: out, selection: try TensorSelection(), command: "quantize"))
  }

  func config(_ folder: String) throws -> JSONValue {
    try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))))
  }

  /// Every module's tensors equal those of a uniform run of its scheme (the uniform runs are
  /// byte-identical to llm-compressor's, QuantizeTests), and config.json holds one group per
  /// scheme naming exactly its modules.
  @Test func schemeRulesWriteEachModuleAsItsUniformRunDoes() throws {
    let folder = TemporaryFolder()
    let rules = [
      try SchemeRule(parsing: "mlp\\.down_proj=W8A16", defaultGroupSize: 128),
      try SchemeRule(parsing: "layers\\.0\\.self_attn=NVFP4", defaultGroupSize: 128),
      try SchemeRule(parsing: "layers\\.1\\.mlp\\.up_proj=keep", defaultGroupSize: 128),
      try SchemeRule(parsing: "layers\\.1\\.self_attn\\.o_proj=W4A16:g32", defaultGroupSize: 128),
    ]
    let mixed = folder.file("mixed")
    _ = try quantize(.init(scheme: .w4a16, ignore: Self.ignore, schemeFor: rules), "tiny-llama-bf16", to: mixed)
    let expected: [(String, QuantizationScheme, Int)] = [
      ("model.layers.0.mlp.down_proj", .w8a16, 128), ("model.layers.1.mlp.down_proj", .w8a16, 128),
      ("model.layers.0.self_attn.q_proj", .nvfp4, 0), ("model.layers.0.self_attn.k_proj", .nvfp4, 0),
      ("model.layers.1.self_attn.o_proj", .w4a16, 32), ("model.layers.1.self_attn.q_proj", .w4a16, 128),
      ("model.layers.0.mlp.gate_proj", .w4a16, 128),
    ]
    let ours = try Checkpoint.open(mixed)
    var uniform: [String: Checkpoint] = [:]
    for (module, scheme, group) in expected {
      let key = "\(scheme.rawValue)-\(group)"
      if uniform[key] == nil {
        let out = folder.file(key)
        _ = try quantize(.init(scheme: scheme, groupSize: group, ignore: Self.ignore), "tiny-llama-bf16", to: out)
        uniform[key] = try Checkpoint.open(out)
      }
      let reference = uniform[key]!
      let names = reference.tensors.map(\.name).filter { $0.hasPrefix(module + ".") }
      #expect(!names.isEmpty)
      for name in names {
        let mine = try #require(ours.tensor(named: name), "\(name) missing")
        #expect(Array(ours.bytes(of: mine)) == Array(reference.bytes(of: reference.tensor(named: name)!)), "\(name)")
      }
    }
    // The kept module is written as it is.
    let kept = try #require(ours.tensor(named: "model.layers.1.mlp.up_proj.weight"))
    let input = try Checkpoint.open(fixture("tiny-llama-bf16"))
    #expect(Array(ours.bytes(of: kept)) == Array(input.bytes(of: input.tensor(named: kept.name)!)))

    let block = try #require(try config(mixed)["quantization_config"])
    #expect(block["format"]?.stringValue == "mixed-precision")
    let groups = try #require(block["config_groups"]?.members)
    #expect(groups.map(\.key) == ["group_0", "group_1", "group_2", "group_3"])
    var targeted: [String: String] = [:]
    for group in groups {
      for target in group.value["targets"]?.arrayValue ?? [] {
        #expect(targeted[target.stringValue!] == nil, "\(target) in two groups")
        targeted[target.stringValue!] = group.value["weights"]?["num_bits"].map { "\($0)" }
      }
    }
    #expect(targeted.count == 13)  // 14 linear modules, one kept
    #expect(block["ignore"]?.arrayValue?.contains(.string("model.layers.1.mlp.up_proj")) == true)

    // decompress reads every group with its codec: equal to the uniform runs' decoding.
    let dense = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(input: mixed, output: dense, selection: try TensorSelection(), command: "decompress"))
    let decoded = try Checkpoint.open(dense)
    for (module, scheme, group) in expected {
      let reference = folder.file("\(scheme.rawValue)-\(group)-dense")
      if !FileManager.default.fileExists(atPath: reference) {
        _ = try Compressor.run(
          pass: try DecompressPass(),
          options: CompressionOptions(
            input: folder.file("\(scheme.rawValue)-\(group)"), output: reference, selection: try TensorSelection(),
            command: "decompress"))
      }
      let expectedWeights = try Checkpoint.open(reference)
      let name = module + ".weight"
      #expect(
        Array(decoded.bytes(of: decoded.tensor(named: name)!))
          == Array(expectedWeights.bytes(of: expectedWeights.tensor(named: name)!)), "\(name)")
    }
  }

  /// One scheme for every module through rules is the uniform output, config.json included.
  @Test func rulesThatGiveOneSchemeWriteTheUniformConfig() throws {
    let folder = TemporaryFolder()
    let rules = [try SchemeRule(parsing: ".=NVFP4", defaultGroupSize: 128)]
    _ = try quantize(
      .init(scheme: .w4a16, ignore: Self.ignore, schemeFor: rules), "tiny-llama-f32", to: folder.file("a"))
    _ = try quantize(.init(scheme: .nvfp4, ignore: Self.ignore), "tiny-llama-f32", to: folder.file("b"))
    #expect(
      try String(contentsOfFile: folder.file("a/config.json"), encoding: .utf8)
        == (try String(contentsOfFile: folder.file("b/config.json"), encoding: .utf8)))
  }

  @Test func schemeSpellings() throws {
    #expect(try SchemeChoice(parsing: "w4a16:g32", defaultGroupSize: 128).description == "W4A16:g32")
    #expect(try SchemeChoice(parsing: "W8A16", defaultGroupSize: 0).description == "W8A16:g0")
    #expect(try SchemeChoice(parsing: "nvfp4", defaultGroupSize: 128).description == "NVFP4A16")
    #expect(try SchemeChoice(parsing: "keep", defaultGroupSize: 128) == .keep)
    for bad in ["W9A16", "NVFP4:g32", "W4A16:g7", "W4A16:gx", ""] {
      #expect(throws: SwiftCompressError.self, "\(bad)") { try SchemeChoice(parsing: bad, defaultGroupSize: 128) }
    }
    #expect(throws: SwiftCompressError.self) { try SchemeRule(parsing: "mlp", defaultGroupSize: 128) }
    #expect(throws: SwiftCompressError.self) { try SchemeRule(parsing: "(=W4A16", defaultGroupSize: 128) }
    #expect(AllocationTarget.parseSize("1.5MiB") == 1_572_864)
    #expect(AllocationTarget.parseSize("300K") == 300_000)
    #expect(AllocationTarget.parseSize("12345") == 12345)
    #expect(AllocationTarget.parseSize("-3M") == nil)
  }

  // MARK: - The allocator

  /// Every combination of options, for small instances.
  func bruteForce(_ items: [Allocator.Item], budget: Double) -> Double? {
    var best: Double?
    func visit(_ i: Int, _ bits: Double, _ loss: Double) {
      if bits > budget { return }
      if i == items.count {
        if best == nil || loss < best! { best = loss }
        return
      }
      for o in items[i].options { visit(i + 1, bits + o.bits, loss + o.loss) }
    }
    visit(0, 0, 0)
    return best
  }

  /// Random instances (seeded): the solution fits, is between the LP bound and every
  /// uniform choice that fits, and is within the bound of the exact optimum.
  @Test func allocationIsFeasibleBoundedAndNearOptimal() throws {
    var random = SplitMix64(seed: 16)
    let choices = SchemeChoice.defaultCandidates
    var exact = 0
    for _ in 0..<300 {
      let count = 2 + Int(random.next() % 5)
      var items: [Allocator.Item] = []
      for i in 0..<count {
        let size = Double(1 + random.next() % 8) * 1024
        let scale = pow(10, 4 * random.uniform() - 2)
        let options = choices.enumerated().map { k, choice in
          let bits = [4.5, 4.25, 4.125, 4.5, 8.125, 16][k]
          let loss = k == 5 ? 0 : scale * pow(2, -2 * bits) * (0.5 + random.uniform())
          return Allocator.Option(choice: choice, bits: bits * size, loss: loss)
        }
        items.append(Allocator.Item(name: "m\(i)", modules: ["m\(i)"], options: options))
      }
      let range = Allocator.range(items)
      let budget = range.lowerBound + random.uniform() * (range.upperBound - range.lowerBound) * 0.6
      let solution = try Allocator.allocate(items, budget: budget)
      let optimum = try #require(bruteForce(items, budget: budget))
      #expect(solution.bits <= budget)
      #expect(solution.lowerBound <= optimum * (1 + 1e-12) + 1e-300)
      #expect(solution.loss >= optimum * (1 - 1e-9))
      // The classic bound: at most one hull step above the LP optimum.
      let largestStep =
        items.map { item in
          let hull = Allocator.hull(item.options)
          return zip(hull, hull.dropFirst()).map { $0.loss - $1.loss }.max() ?? 0
        }.max() ?? 0
      #expect(solution.loss - solution.lowerBound <= largestStep * (1 + 1e-9))
      for choice in choices {
        let uniform = items.map { item in item.options.first { $0.choice == choice }! }
        if uniform.reduce(0, { $0 + $1.bits }) <= budget {
          #expect(solution.loss <= uniform.reduce(0) { $0 + $1.loss })
        }
      }
      if solution.loss <= optimum * (1 + 1e-9) { exact += 1 }
      // Deterministic.
      #expect(try Allocator.allocate(items, budget: budget) == solution)
    }
    #expect(exact >= 200, "exact on \(exact) of 300")
  }

  @Test func hullKeepsOnlyTheLowerConvexFrontier() {
    func o(_ bits: Double, _ loss: Double) -> Allocator.Option { .init(choice: .keep, bits: bits, loss: loss) }
    let hull = Allocator.hull([o(4, 10), o(5, 9.9), o(8, 1), o(16, 0), o(6, 12), o(4.5, 20)])
    #expect(hull.map(\.bits) == [4, 8, 16])
  }

  /// On a model with outlier channels and calibrate's statistics, the allocation's estimated
  /// loss at a budget a mix can use is strictly below every uniform scheme within it.
  @Test(arguments: [4.3, 4.4, 5.0, 6.0])
  func allocationBeatsEveryUniformSchemeWithinTheBudget(_ bpw: Double) throws {
    let checkpoint = try Checkpoint.open(fixture("tiny-llama-f32"))
    let configuration = QuantizePass.Configuration(
      scheme: .w4a16, ignore: Self.ignore, target: .bitsPerWeight(bpw),
      statistics: fixture("golden/evaluation/statistics.tiny-llama-f32.safetensors"))
    let pass = try QuantizePass(configuration: configuration).prepared(for: checkpoint)
    let statistics = try Sensitivity.Statistics.load(
      configuration.statistics!, modules: try pass.selectedModules(checkpoint))
    let sensitivity = try Sensitivity.measure(
      checkpoint, pass: pass, candidates: configuration.candidates, statistics: statistics)
    let weights = Double(sensitivity.rows.reduce(0) { $0 + $1.elementCount })
    var bits = 0.0
    var loss = 0.0
    for row in sensitivity.rows {
      let cell = try #require(row.cells.first { $0.choice == pass.choice(ofModule: row.module) })
      bits += cell.bits
      loss += cell.loss
    }
    #expect(bits / weights <= bpw)
    var compared = 0
    for total in sensitivity.totals() {
      guard let total, total.bitsPerWeight <= bpw else { continue }
      #expect(loss < total.loss, "\(total.choice): \(total.loss) <= \(loss)")
      compared += 1
    }
    #expect(compared >= 1)
    // Modules vLLM fuses got one scheme.
    for row in sensitivity.rows {
      let partners = sensitivity.rows.filter { $0.set == row.set }
      #expect(Set(partners.map { pass.choice(ofModule: $0.module) }).count == 1)
    }
  }
}

extension MixedPrecisionTests {
  /// The full-H proxy tr(E XᵀX Eᵀ) equals the summed squared output errors Σ_t ||E x_t||² over
  /// the tokens, computed directly in Double (seeded random E and X; relative tolerance 1e-5).
  @Test func outputErrorProxyIsTheSummedSquaredOutputError() throws {
    var random = SplitMix64(seed: 7)
    let (rows, columns, tokens) = (24, 16, 40)
    let x = (0..<(tokens * columns)).map { _ in random.gaussian() }
    let reference = (0..<(rows * columns)).map { _ in random.gaussian() }
    let decoded = reference.map { $0 + 0.1 * random.gaussian() }
    var gram = [Float](repeating: 0, count: columns * columns)
    for t in 0..<tokens {
      for i in 0..<columns {
        for j in 0..<columns { gram[i * columns + j] += x[t * columns + i] * x[t * columns + j] }
      }
    }
    var direct = 0.0
    for t in 0..<tokens {
      for r in 0..<rows {
        var y = 0.0
        for c in 0..<columns {
          y += (Double(reference[r * columns + c]) - Double(decoded[r * columns + c])) * Double(x[t * columns + c])
        }
        direct += y * y
      }
    }
    let proxy = try Sensitivity.quadraticForm(reference, decoded, gram: gram, columns: columns)
    #expect(abs(proxy - direct) <= 1e-5 * direct, "\(proxy) vs \(direct)")
    // The diagonal proxy uses H's diagonal only.
    let norms = (0..<columns).map { gram[$0 * columns + $0].squareRoot() }
    let diagonal = Sensitivity.cell(.keep, bits: 0, reference: reference, decoded: decoded, norms: norms).outputError!
    var expected = 0.0
    for r in 0..<rows {
      for c in 0..<columns {
        let d = Double(reference[r * columns + c]) - Double(decoded[r * columns + c])
        expected += d * d * Double(gram[c * columns + c])
      }
    }
    #expect(abs(diagonal - expected) <= 1e-5 * expected)
  }
}
