import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// Runs `configuration` on a fixture into a temporary folder.
func prune(_ model: String, _ configuration: PrunePass.Configuration, into folder: TemporaryFolder, name: String = "p")
  throws -> (report: Report, output: Checkpoint)
{
  let out = folder.file(name)
  let report = try Compressor.run(
    pass: try PrunePass(configuration: configuration),
    options: CompressionOptions(input: fixture(model), output: out, selection: try TensorSelection(), command: "prune"))
  return (report, try Checkpoint.open(out))
}

/// Writes a safetensors file of (name, dtype, shape, bytes) tensors.
func writeTensors(_ tensors: [(String, DType, [Int], [UInt8])], to path: String) throws {
  let writer = try SafeTensorsWriter(
    destination: path, tensors: tensors.map { PlannedTensor(name: $0.0, dtype: $0.1, shape: $0.2) })
  for (name, _, _, bytes) in tensors { try bytes.withUnsafeBytes { try writer.write(name, $0) } }
  try writer.finish()
}

/// The dense values of a tensor as Float32.
func values(_ checkpoint: Checkpoint, _ name: String) -> [Float] {
  guard let tensor = checkpoint.tensor(named: name) else { return [] }
  return Float32Conversion.floats(
    checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
}

/// Masks against Fixtures/golden/pruning, made by an independent numpy implementation of
/// each method (Scripts/reference/make_pruning_goldens.py).
@Suite("Pruning against the numpy reference masks")
struct PruneGoldenTests {
  static let calibration = fixture("golden/pruning/tiny-llama-calibration.safetensors")
  static let cases: [(String, String, PrunePass.Configuration)] = ["tiny-llama-f32", "tiny-llama-bf16"].flatMap {
    model in
    [
      ("magnitude-tensor-0.5", PrunePass.Configuration(method: .magnitude, sparsity: 0.5)),
      ("magnitude-row-0.3", PrunePass.Configuration(method: .magnitude, sparsity: 0.3, scope: .row)),
      ("magnitude-global-0.6", PrunePass.Configuration(method: .magnitude, sparsity: 0.6, scope: .global)),
      ("magnitude-2of4", PrunePass.Configuration(method: .nm, pattern: NMPattern(n: 2, m: 4))),
      ("magnitude-4of8", PrunePass.Configuration(method: .nm, pattern: NMPattern(n: 4, m: 8))),
      ("wanda-row-0.5", PrunePass.Configuration(method: .wanda, sparsity: 0.5, calibration: calibration)),
      (
        "wanda-2of4",
        PrunePass.Configuration(method: .wanda, pattern: NMPattern(n: 2, m: 4), calibration: calibration)
      ),
    ].map { (model, $0.0, $0.1) }
  }

  /// The bitmask output stores exactly the keep mask, so it is compared byte for byte;
  /// the dense output must be the input where kept and zero elsewhere.
  @Test(arguments: cases)
  func masksEqualTheReference(_ model: String, _ name: String, _ configuration: PrunePass.Configuration) throws {
    let folder = TemporaryFolder()
    var bitmask = configuration
    bitmask.sparseFormat = .bitmask
    let (report, sparse) = try prune(model, bitmask, into: folder, name: "bitmask")
    let (_, dense) = try prune(model, configuration, into: folder, name: "dense")
    let input = try Checkpoint.open(fixture(model))
    let golden = try Checkpoint.open(fixture("golden/pruning/\(model)/\(name).safetensors"))
    #expect(golden.tensors.count == 14)
    var differing: [String] = []
    for tensor in golden.tensors {
      let module = String(tensor.name.dropLast(".weight".count))
      guard let mask = sparse.tensor(named: module + ".bitmask") else {
        differing.append(tensor.name)
        continue
      }
      if Array(sparse.bytes(of: mask)) != Array(golden.bytes(of: tensor)) { differing.append(tensor.name) }
      // Dense: kept weights unchanged, pruned ones zero.
      let bits = Array(golden.bytes(of: tensor))
      let before = values(input, tensor.name)
      let after = values(dense, tensor.name)
      let columns = input.tensor(named: tensor.name)!.info.shape[1]
      let rowBytes = (columns + 7) / 8
      for i in before.indices {
        let kept = bits[(i / columns) * rowBytes + (i % columns) / 8] >> ((i % columns) % 8) & 1 == 1
        if after[i] != (kept ? before[i] : 0) {
          differing.append(tensor.name + " (dense)")
          break
        }
      }
    }
    #expect(differing.isEmpty, "\(differing.count) masks differ, e.g. \(differing.prefix(3))")
    #expect(report.totals.transformed == 14)
    if let pattern = configuration.pattern {
      #expect(report.totals.sparsity?.patternHolds == true)
      #expect(report.totals.sparsity?.pattern == pattern.description)
    }
  }
}

@Suite("Pruning")
struct PruneTests {
  @Test func achievedSparsityAndReportFieldsPerScope() throws {
    let folder = TemporaryFolder()
    for (scope, sparsity) in [(PruneScope.tensor, 0.5), (.row, 0.25), (.global, 0.7)] {
      let (report, output) = try prune(
        "tiny-llama-f32", .init(method: .magnitude, sparsity: sparsity, scope: scope), into: folder,
        name: scope.rawValue)
      let total = try #require(report.totals.sparsity)
      #expect(total.target == sparsity)
      // floor() per tensor or row: within one weight per row of the target.
      #expect(abs(total.achieved - sparsity) < 0.01, "\(scope): \(total.achieved)")
      var zeros = 0
      var count = 0
      for entry in report.tensors where !entry.isKept {
        let v = values(output, entry.name)
        zeros += v.filter { $0 == 0 }.count
        count += v.count
        #expect(entry.sparsity?.zeros == v.filter { $0 == 0 }.count)
        if scope == .tensor { #expect(entry.sparsity?.pruned == Int((sparsity * Double(v.count)).rounded(.down))) }
      }
      #expect(total.zeros == zeros)
      if scope == .global { #expect(zeros == Int((sparsity * Double(count)).rounded(.down))) }
    }
  }

  /// Scores tied at the threshold are pruned in index order: with every score equal,
  /// the first k weights go.
  @Test func tiesArePrunedInIndexOrder() throws {
    let folder = TemporaryFolder()
    let path = folder.file("ties.safetensors")
    let rows = 4
    let columns = 8
    let weights = [Float](repeating: 0.5, count: rows * columns).enumerated().map {
      $0.offset % 2 == 0 ? $0.element : -$0.element
    }
    try writeTensors(
      [("layer.weight", .f32, [rows, columns], weights.withUnsafeBytes { Array($0) })], to: path)
    for scope in PruneScope.allCases {
      let out = folder.file("out-\(scope.rawValue)")
      _ = try Compressor.run(
        pass: try PrunePass(configuration: .init(method: .magnitude, sparsity: 0.25, scope: scope)),
        options: CompressionOptions(input: path, output: out, selection: try TensorSelection(), command: "prune"))
      let result = values(try Checkpoint.open(out), "layer.weight")
      let zeroed = result.indices.filter { result[$0] == 0 }
      let expected = scope == .row ? (0..<rows).flatMap { r in (r * columns)..<(r * columns + 2) } : Array(0..<8)
      #expect(zeroed == expected, "\(scope)")
    }
    // N:M: of four equal scores, the two later ones are kept.
    let out = folder.file("nm")
    _ = try Compressor.run(
      pass: try PrunePass(configuration: .init(method: .nm, pattern: NMPattern(n: 1, m: 4))),
      options: CompressionOptions(input: path, output: out, selection: try TensorSelection(), command: "prune"))
    let kept = values(try Checkpoint.open(out), "layer.weight").indices.filter {
      values(try! Checkpoint.open(out), "layer.weight")[$0] != 0
    }
    #expect(kept == Array(stride(from: 3, to: rows * columns, by: 4)))
  }

  @Test func randomIsSeededAndWorseThanMagnitude() throws {
    let folder = TemporaryFolder()
    let a = try prune("tiny-llama-f32", .init(method: .random, sparsity: 0.5, seed: 7), into: folder, name: "a")
    let b = try prune("tiny-llama-f32", .init(method: .random, sparsity: 0.5, seed: 7), into: folder, name: "b")
    let c = try prune("tiny-llama-f32", .init(method: .random, sparsity: 0.5, seed: 8), into: folder, name: "c")
    let m = try prune("tiny-llama-f32", .init(method: .magnitude, sparsity: 0.5), into: folder, name: "m")
    let name = "model.layers.0.mlp.up_proj.weight"
    #expect(values(a.output, name) == values(b.output, name))
    #expect(values(a.output, name) != values(c.output, name))
    #expect(a.report.totals.sparsity?.achieved == 0.5)
    let randomError = try #require(a.report.totals.metrics?.relativeFrobeniusError)
    let magnitudeError = try #require(m.report.totals.metrics?.relativeFrobeniusError)
    #expect(randomError > 2 * magnitudeError)
    // Random at 50% removes about half of the energy: relative error near sqrt(0.5).
    #expect(abs(randomError - 0.5.squareRoot()) < 0.02)
  }

  /// Wanda keeps weights on high-activation channels that magnitude pruning drops.
  @Test func wandaDiffersFromMagnitudeWhereActivationsDiffer() throws {
    let folder = TemporaryFolder()
    let calibration = PruneGoldenTests.calibration
    let w = try prune(
      "tiny-llama-f32", .init(method: .wanda, sparsity: 0.5, calibration: calibration), into: folder, name: "w")
    let m = try prune("tiny-llama-f32", .init(method: .magnitude, sparsity: 0.5, scope: .row), into: folder, name: "m")
    let name = "model.layers.0.self_attn.q_proj.weight"
    #expect(values(w.output, name) != values(m.output, name))
    #expect(w.report.totals.sparsity?.achieved == 0.5)
  }

  @Test func bitmaskRoundTripsThroughDecompressExactly() throws {
    let folder = TemporaryFolder()
    for model in ["tiny-llama-f32", "tiny-llama-bf16", "tiny-llama-f16"] {
      for configuration in [
        PrunePass.Configuration(method: .magnitude, sparsity: 0.6, sparseFormat: .bitmask),
        PrunePass.Configuration(method: .nm, pattern: NMPattern(n: 2, m: 4), sparseFormat: .bitmask),
        PrunePass.Configuration(method: .nm, pattern: NMPattern(n: 1, m: 8), sparseFormat: .bitmask),
      ] {
        var denseConfiguration = configuration
        denseConfiguration.sparseFormat = .dense
        let tag = "\(model)-\(configuration.pattern?.description ?? "u")".replacingOccurrences(of: ":", with: "of")
        let (report, _) = try prune(model, configuration, into: folder, name: "s-\(tag)")
        let (_, dense) = try prune(model, denseConfiguration, into: folder, name: "d-\(tag)")
        #expect(report.totals.bytesAfter < report.totals.bytesBefore)
        let restored = folder.file("r-\(tag)")
        _ = try Compressor.run(
          pass: try DecompressPass(),
          options: CompressionOptions(
            input: folder.file("s-\(tag)"), output: restored, selection: try TensorSelection(), command: "decompress"))
        let back = try Checkpoint.open(restored)
        #expect(Set(back.tensors.map(\.name)) == Set(dense.tensors.map(\.name)))
        for tensor in dense.tensors {
          let other = try #require(back.tensor(named: tensor.name))
          #expect(other.info.dtype == tensor.info.dtype && other.info.shape == tensor.info.shape)
          #expect(Array(back.bytes(of: other)) == Array(dense.bytes(of: tensor)), "\(tag) \(tensor.name)")
        }
        let config = try String(contentsOfFile: restored + "/config.json", encoding: .utf8)
        #expect(!config.contains("quantization_config"))
      }
    }
  }

  @Test func bitmaskLayoutFollowsCompressedTensors() throws {
    let folder = TemporaryFolder()
    let (_, unstructured) = try prune(
      "tiny-llama-f32", .init(method: .magnitude, sparsity: 0.5, scope: .row, sparseFormat: .bitmask), into: folder,
      name: "u")
    let module = "model.layers.0.mlp.down_proj"  // [128, 384]
    #expect(unstructured.tensor(named: module + ".weight") == nil)
    #expect(unstructured.tensor(named: module + ".shape")?.info.shape == [2])
    #expect(unstructured.tensor(named: module + ".compressed")?.info.shape == [128 * 192])
    #expect(unstructured.tensor(named: module + ".bitmask")?.info.shape == [128, 48])
    let offsets = try #require(unstructured.tensor(named: module + ".row_offsets"))
    #expect(offsets.info.dtype == .i64 && offsets.info.shape == [128])
    let starts = unstructured.bytes(of: offsets).withMemoryRebound(to: Int64.self) { Array($0) }
    #expect(starts == (0..<128).map { Int64($0 * 192) })
    let (_, twoFour) = try prune(
      "tiny-llama-bf16", .init(method: .nm, pattern: NMPattern(n: 2, m: 4), sparseFormat: .bitmask), into: folder,
      name: "24")
    #expect(twoFour.tensor(named: module + ".shape")?.info.shape == [2, 1])
    #expect(twoFour.tensor(named: module + ".compressed")?.info.shape == [128, 192])
    #expect(twoFour.tensor(named: module + ".compressed")?.info.dtype == .bf16)
    #expect(twoFour.tensor(named: module + ".row_offsets") == nil)
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("24/config.json")))))
    #expect(config["quantization_config"]?["sparsity_config"]?["format"]?.stringValue == "sparse-24-bitmask")
    #expect(config["quantization_config"]?["sparsity_config"]?["sparsity_structure"]?.stringValue == "2:4")
  }

  @Test func badInputIsRejectedBeforeAnythingIsWritten() throws {
    let folder = TemporaryFolder()
    func rejects(_ model: String = "tiny-llama-f32", _ make: () throws -> PrunePass.Configuration) -> String? {
      let out = folder.file("bad")
      do {
        _ = try prune(model, try make(), into: folder, name: "bad")
        return nil
      } catch {
        #expect(!FileManager.default.fileExists(atPath: out), "output written despite \(error)")
        return (error as? LocalizedError)?.errorDescription ?? "\(error)"
      }
    }
    #expect(rejects { .init(method: .magnitude, sparsity: 1) }?.contains("outside [0, 1)") == true)
    #expect(rejects { .init(method: .magnitude, sparsity: -0.1) }?.contains("outside [0, 1)") == true)
    #expect(rejects { .init(method: .nm, pattern: NMPattern(n: 4, m: 4)) }?.contains("1 <= N < M") == true)
    #expect(rejects { .init(method: .nm, pattern: NMPattern(n: 2, m: 64)) }?.contains("1 <= N < M") == true)
    // 384 columns are not a multiple of 7 (or of 5).
    let nm = rejects { .init(method: .nm, pattern: NMPattern(n: 2, m: 5)) }
    #expect(nm?.contains("M = 5") == true && nm?.contains("model.layers.0") == true)
    // A calibration file without the layers: the first selected layer is named.
    let missing = rejects {
      .init(
        method: .wanda, sparsity: 0.5, calibration: fixture("golden/pruning/tiny-llama-f32/wanda-row-0.5.safetensors"))
    }
    #expect(missing?.contains("no statistics for this layer") == true)
    // Statistics of the wrong length: the BERT layers are narrower than the Llama ones.
    let wrong = folder.file("wrong.safetensors")
    try writeTensors(
      [("model.layers.0.mlp.down_proj", .f32, [10], [UInt8](repeating: 0, count: 40))], to: wrong)
    let length = rejects {
      .init(
        method: .wanda, sparsity: 0.5, calibration: wrong,
        ignore: ["lm_head", "re:.*(q|k|v|o|gate|up)_proj", "re:model.layers.1"])
    }
    #expect(length?.contains("384 input channels") == true)
    // Removing every unit.
    #expect(
      rejects { .init(method: .structured, structure: .mlp, ratio: 1) }?.contains("--ratio") == true)
    // Compressed input.
    let quantized = folder.file("q")
    _ = try Compressor.run(
      pass: try QuantizePass(configuration: .init(scheme: .w8a16)),
      options: CompressionOptions(
        input: fixture("tiny-llama-f32"), output: quantized, selection: try TensorSelection(), command: "quantize"))
    let out = folder.file("bad2")
    #expect(throws: SwiftCompressError.self) {
      _ = try Compressor.run(
        pass: try PrunePass(configuration: .init(method: .magnitude, sparsity: 0.5)),
        options: CompressionOptions(input: quantized, output: out, selection: try TensorSelection(), command: "prune"))
    }
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}

@Suite("Structured pruning")
struct StructuredPruneTests {
  /// The L2 score of each MLP neuron of layer 0 computed here independently: gate row,
  /// up row and down column together.
  static func neuronScores(_ input: Checkpoint, layer: String) -> [Double] {
    let gate = values(input, layer + ".mlp.gate_proj.weight")
    let up = values(input, layer + ".mlp.up_proj.weight")
    let down = values(input, layer + ".mlp.down_proj.weight")
    let (units, hidden) = (384, 128)
    return (0..<units).map { u in
      var s = 0.0
      for c in 0..<hidden {
        s += Double(gate[u * hidden + c]) * Double(gate[u * hidden + c])
        s += Double(up[u * hidden + c]) * Double(up[u * hidden + c])
        s += Double(down[c * units + u]) * Double(down[c * units + u])
      }
      return s
    }
  }

  @Test func mlpNeuronsAreRemovedFromEveryCoupledTensor() throws {
    let folder = TemporaryFolder()
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let (report, shrunk) = try prune(
      "tiny-llama-f32", .init(method: .structured, structure: .mlp, ratio: 0.25, shrink: true), into: folder,
      name: "s")
    let (_, zeroed) = try prune(
      "tiny-llama-f32", .init(method: .structured, structure: .mlp, ratio: 0.25), into: folder, name: "z")
    let layer = "model.layers.0"
    let scores = Self.neuronScores(input, layer: layer)
    let removed = Set(scores.indices.sorted { scores[$0] < scores[$1] }.prefix(96))
    let kept = (0..<384).filter { !removed.contains($0) }
    #expect(shrunk.tensor(named: layer + ".mlp.gate_proj.weight")?.info.shape == [288, 128])
    #expect(shrunk.tensor(named: layer + ".mlp.down_proj.weight")?.info.shape == [128, 288])
    let gate = values(input, layer + ".mlp.gate_proj.weight")
    let down = values(input, layer + ".mlp.down_proj.weight")
    let newGate = values(shrunk, layer + ".mlp.gate_proj.weight")
    let newDown = values(shrunk, layer + ".mlp.down_proj.weight")
    #expect(newGate == kept.flatMap { u in gate[(u * 128)..<((u + 1) * 128)] })
    #expect(newDown == (0..<128).flatMap { c in kept.map { down[c * 384 + $0] } })
    // In place: the same units zeroed, the shape kept.
    let zeroGate = values(zeroed, layer + ".mlp.gate_proj.weight")
    #expect(zeroed.tensor(named: layer + ".mlp.gate_proj.weight")?.info.shape == [384, 128])
    #expect((0..<384).allSatisfy { u in zeroGate[u * 128] == (removed.contains(u) ? 0 : gate[u * 128]) })
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("s/config.json")))))
    #expect(config["intermediate_size"]?.uint64Value == 288)
    #expect(report.totals.sparsity?.unitsRemoved == 2 * 96)  // each neuron once, not once per coupled tensor
    let entry = try #require(report.tensors.first { $0.name == layer + ".mlp.up_proj.weight" })
    #expect(entry.sparsity?.shapeAfter == [288, 128])
    #expect(entry.bytesAfter == 288 * 128 * 4)
    // Attention is untouched.
    #expect(values(shrunk, layer + ".self_attn.q_proj.weight") == values(input, layer + ".self_attn.q_proj.weight"))
  }

  @Test func keyValueGroupsAreRemovedWithTheirQueryHeads() throws {
    let folder = TemporaryFolder()
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let (_, shrunk) = try prune(
      "tiny-llama-f32", .init(method: .structured, structure: .heads, ratio: 0.5, norm: .l1, shrink: true),
      into: folder, name: "s")
    let p = "model.layers.1.self_attn."
    // 4 query heads in 2 groups of 2 sharing a key-value head; head_dim 32.
    #expect(shrunk.tensor(named: p + "q_proj.weight")?.info.shape == [64, 128])
    #expect(shrunk.tensor(named: p + "k_proj.weight")?.info.shape == [32, 128])
    #expect(shrunk.tensor(named: p + "v_proj.weight")?.info.shape == [32, 128])
    #expect(shrunk.tensor(named: p + "o_proj.weight")?.info.shape == [128, 64])
    // The kept group's key rows are one of the two original groups, and the query rows
    // are that group's two heads.
    let k = values(input, p + "k_proj.weight")
    let q = values(input, p + "q_proj.weight")
    let keptK = values(shrunk, p + "k_proj.weight")
    let group = keptK == Array(k[0..<(32 * 128)]) ? 0 : 1
    #expect(keptK == Array(k[(group * 32 * 128)..<((group + 1) * 32 * 128)]))
    #expect(values(shrunk, p + "q_proj.weight") == Array(q[(group * 64 * 128)..<((group + 1) * 64 * 128)]))
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("s/config.json")))))
    #expect(config["num_attention_heads"]?.uint64Value == 2)
    #expect(config["num_key_value_heads"]?.uint64Value == 1)
    #expect(config["head_dim"]?.uint64Value == 32)
  }

  @Test func bertMLPShrinksAndHeadsAreZeroedInPlace() throws {
    let folder = TemporaryFolder()
    let (_, mlp) = try prune(
      "tiny-bert", .init(method: .structured, structure: .mlp, ratio: 0.5, shrink: true), into: folder, name: "m")
    #expect(mlp.tensor(named: "encoder.layer.0.intermediate.dense.weight")?.info.shape == [128, 64])
    #expect(mlp.tensor(named: "encoder.layer.0.intermediate.dense.bias")?.info.shape == [128])
    #expect(mlp.tensor(named: "encoder.layer.0.output.dense.weight")?.info.shape == [64, 128])
    #expect(mlp.tensor(named: "encoder.layer.0.output.dense.bias")?.info.shape == [64])
    let (_, heads) = try prune(
      "tiny-bert", .init(method: .structured, structure: .heads, ratio: 0.25), into: folder, name: "h")
    let query = values(heads, "encoder.layer.0.attention.self.query.weight")
    let zeroRows = (0..<64).filter { r in (0..<64).allSatisfy { query[r * 64 + $0] == 0 } }
    #expect(zeroRows.count == 16)  // one head of 4, 16 rows each
    #expect(zeroRows.last! - zeroRows.first! == 15)
    #expect(throws: SwiftCompressError.self) {
      _ = try prune(
        "tiny-bert", .init(method: .structured, structure: .heads, ratio: 0.25, shrink: true), into: folder, name: "x")
    }
  }

  @Test func rowsAreZeroedPerTensor() throws {
    let folder = TemporaryFolder()
    let (report, output) = try prune(
      "tiny-llama-f32", .init(method: .structured, structure: .rows, ratio: 0.5, norm: .l1), into: folder, name: "r")
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let name = "model.layers.0.self_attn.k_proj.weight"  // [64, 128]
    let before = values(input, name)
    let after = values(output, name)
    let l1 = (0..<64).map { r in (0..<128).reduce(0.0) { $0 + Double(abs(before[r * 128 + $1])) } }
    let removed = Set(l1.indices.sorted { l1[$0] < l1[$1] }.prefix(32))
    for r in 0..<64 {
      let row = Array(after[(r * 128)..<((r + 1) * 128)])
      #expect(
        row == (removed.contains(r) ? [Float](repeating: 0, count: 128) : Array(before[(r * 128)..<((r + 1) * 128)])))
    }
    #expect(report.tensors.first { $0.name == name }?.sparsity?.unitsRemoved == 32)
  }
}

@Suite("Prune configuration")
struct PruneConfigurationTests {
  @Test func registryBuildsAPrunePassFromMinimalJSON() throws {
    let pass = try PassRegistry.make(
      identifier: "prune", configurationJSON: #"{"method":"nm","pattern":"2:4","sparse_format":"bitmask"}"#)
    let prune = try #require(pass as? PrunePass)
    #expect(prune.configuration.pattern == NMPattern(n: 2, m: 4))
    #expect(prune.configuration.sparseFormat == .bitmask)
    #expect(prune.configuration.ignore == ["lm_head"])
    #expect(prune.configurationJSON.contains(#""pattern":"2:4""#))
    #expect(throws: SwiftCompressError.self) {
      _ = try PassRegistry.make(identifier: "prune", configurationJSON: #"{"method":"nm","pattern":"2-4"}"#)
    }
    #expect(PruningCriteria.names == ["magnitude", "wanda", "random"])
  }
}

/// Structured pruning's unit counts, per model and per layer. The expected model counts
/// come from config.json and the documented rule (floor(ratio x units) in every layer,
/// docs/algorithms.md), or for rows and columns from the input's shapes; the per-layer
/// counts are read from the output itself (the shapes written with --shrink, the units
/// whose every row and column is exactly zero in place). Reports are read from the JSON
/// and Markdown files the run wrote, as a user would.
@Suite("Structured pruning unit counts")
struct StructuredUnitCountTests {
  struct Scenario: Sendable, CustomTestStringConvertible {
    var model: String
    var structure: StructuredUnit
    var ratio: Double
    var shrink = false
    var testDescription: String { "\(model) \(structure.rawValue) \(ratio)\(shrink ? " --shrink" : "")" }
  }

  static let scenarios: [Scenario] = [
    Scenario(model: "tiny-llama-f32", structure: .mlp, ratio: 0.25, shrink: true),
    Scenario(model: "tiny-llama-f32", structure: .mlp, ratio: 0.25),
    Scenario(model: "tiny-llama-f32", structure: .heads, ratio: 0.5, shrink: true),
    Scenario(model: "tiny-llama-f32", structure: .heads, ratio: 0.5),
    Scenario(model: "tiny-llama-f32", structure: .rows, ratio: 0.5),
    Scenario(model: "tiny-llama-f32", structure: .columns, ratio: 0.25),
    Scenario(model: "tiny-bert", structure: .mlp, ratio: 0.25, shrink: true),
    Scenario(model: "tiny-bert", structure: .mlp, ratio: 0.3),
    Scenario(model: "tiny-bert", structure: .heads, ratio: 0.25),
    Scenario(model: "tiny-bert", structure: .heads, ratio: 0.5),
    Scenario(model: "tiny-bert", structure: .rows, ratio: 0.25),
    Scenario(model: "tiny-bert", structure: .columns, ratio: 0.3),
  ]

  /// Units removed of units there; for grouped key-value heads also the attention heads.
  struct Count: Equatable, CustomStringConvertible {
    var removed = 0
    var total = 0
    var headsRemoved: Int? = nil
    var headsTotal: Int? = nil
    var description: String {
      "\(removed) of \(total)" + (headsRemoved.map { " (\($0) of \(headsTotal ?? -1) heads)" } ?? "")
    }
    static func + (a: Count, b: Count) -> Count {
      Count(
        removed: a.removed + b.removed, total: a.total + b.total,
        headsRemoved: a.headsRemoved.map { $0 + (b.headsRemoved ?? 0) } ?? b.headsRemoved,
        headsTotal: a.headsTotal.map { $0 + (b.headsTotal ?? 0) } ?? b.headsTotal)
    }
  }

  static func floor(_ ratio: Double, _ units: Int) -> Int { Int((ratio * Double(units)).rounded(.down)) }

  static func config(_ model: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixture(model + "/config.json")))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  }

  /// "0", "1", ... from `layers.N.` / `layer.N.`; the name itself outside any layer.
  static func layerKey(_ name: String) -> String {
    let parts = name.split(separator: ".").map(String.init)
    for i in 0..<max(0, parts.count - 1) where ["layers", "layer"].contains(parts[i]) && Int(parts[i + 1]) != nil {
      return parts[i + 1]
    }
    return name
  }

  /// The weights rows/columns pruning selects, by this test's own rule: 2-D float
  /// `.weight` tensors that are neither embeddings nor lm_head.
  static func selectedWeights(_ input: Checkpoint) -> [String] {
    input.tensors.filter { t in
      t.info.shape.count == 2 && t.info.dtype == .f32 && t.name.hasSuffix(".weight") && !t.name.contains("embed")
        && !t.name.hasPrefix("lm_head")
    }.map(\.name)
  }

  /// The model count the documented rule gives, from config.json (mlp, heads) or the
  /// input's shapes (rows, columns).
  static func expected(_ s: Scenario, input: Checkpoint) throws -> Count {
    let c = try config(s.model)
    let layers = try #require(c["num_hidden_layers"] as? Int)
    switch s.structure {
    case .mlp:
      let intermediate = try #require(c["intermediate_size"] as? Int)
      return Count(removed: layers * floor(s.ratio, intermediate), total: layers * intermediate)
    case .heads:
      let heads = try #require(c["num_attention_heads"] as? Int)
      let kvHeads = c["num_key_value_heads"] as? Int ?? heads
      let removed = layers * floor(s.ratio, kvHeads)
      guard heads != kvHeads else { return Count(removed: removed, total: layers * heads) }
      return Count(
        removed: removed, total: layers * kvHeads, headsRemoved: removed * heads / kvHeads,
        headsTotal: layers * heads)
    case .rows, .columns:
      let axis = s.structure == .rows ? 0 : 1
      let extents = selectedWeights(input).map { input.tensor(named: $0)!.info.shape[axis] }
      return Count(
        removed: extents.reduce(0) { $0 + floor(s.ratio, $1) }, total: extents.reduce(0, +))
    }
  }

  /// The units of `members` (tensor, along rows) removed in the output: with --shrink
  /// from the written shapes, in place the units whose every row or column in every
  /// member is exactly zero. Every member must agree.
  static func removedUnits(
    _ members: [(String, Bool)], unitSize: Int, shrink: Bool, input: Checkpoint, output: Checkpoint
  ) throws -> Count {
    var counts: [Count] = []
    for (name, alongRows) in members {
      let before = try #require(input.tensor(named: name)).info.shape
      let after = try #require(output.tensor(named: name)).info.shape
      let axis = alongRows ? 0 : 1
      let total = before[axis] / unitSize
      if shrink {
        counts.append(Count(removed: (before[axis] - after[axis]) / unitSize, total: total))
      } else {
        #expect(after == before, "\(name) keeps its shape in place")
        let v = values(output, name)
        let columns = before.count > 1 ? before[1] : 1
        let zero = (0..<total).filter { u in
          (u * unitSize..<(u + 1) * unitSize).allSatisfy { i in
            alongRows
              ? (0..<columns).allSatisfy { v[i * columns + $0] == 0 }
              : (0..<before[0]).allSatisfy { v[$0 * columns + i] == 0 }
          }
        }
        counts.append(Count(removed: zero.count, total: total))
      }
    }
    let first = try #require(counts.first)
    #expect(
      counts.allSatisfy { $0 == first },
      "coupled tensors disagree: \(zip(members.map(\.0), counts).map { "\($0) \($1)" })")
    return first
  }

  /// Per layer, what the output shows was removed.
  static func measured(_ s: Scenario, input: Checkpoint, output: Checkpoint) throws -> [String: Count] {
    let c = try config(s.model)
    let layers = try #require(c["num_hidden_layers"] as? Int)
    let llama = s.model.contains("llama")
    var result: [String: Count] = [:]
    switch s.structure {
    case .mlp:
      for l in 0..<layers {
        let members =
          llama
          ? ["gate_proj", "up_proj"].map { ("model.layers.\(l).mlp.\($0).weight", true) }
            + [("model.layers.\(l).mlp.down_proj.weight", false)]
          : [
            ("encoder.layer.\(l).intermediate.dense.weight", true),
            ("encoder.layer.\(l).intermediate.dense.bias", true),
            ("encoder.layer.\(l).output.dense.weight", false),
          ]
        result["\(l)"] = try removedUnits(members, unitSize: 1, shrink: s.shrink, input: input, output: output)
      }
    case .heads:
      let heads = try #require(c["num_attention_heads"] as? Int)
      let kvHeads = c["num_key_value_heads"] as? Int ?? heads
      let hidden = try #require(c["hidden_size"] as? Int)
      let headDim = c["head_dim"] as? Int ?? hidden / heads
      for l in 0..<layers {
        if llama {
          let p = "model.layers.\(l).self_attn."
          let groups = try removedUnits(
            [(p + "k_proj.weight", true), (p + "v_proj.weight", true)], unitSize: headDim, shrink: s.shrink,
            input: input, output: output)
          let query = try removedUnits(
            [(p + "q_proj.weight", true), (p + "o_proj.weight", false)], unitSize: headDim, shrink: s.shrink,
            input: input, output: output)
          result["\(l)"] =
            heads == kvHeads
            ? groups
            : Count(
              removed: groups.removed, total: groups.total, headsRemoved: query.removed, headsTotal: query.total)
        } else {
          let p = "encoder.layer.\(l).attention."
          let members =
            ["query", "key", "value"].flatMap { [(p + "self.\($0).weight", true), (p + "self.\($0).bias", true)] }
            + [(p + "output.dense.weight", false)]
          result["\(l)"] = try removedUnits(
            members, unitSize: headDim, shrink: s.shrink, input: input, output: output)
        }
      }
    case .rows, .columns:
      for name in selectedWeights(input) {
        let count = try removedUnits(
          [(name, s.structure == .rows)], unitSize: 1, shrink: false, input: input, output: output)
        result[layerKey(name), default: Count()] = result[layerKey(name), default: Count()] + count
      }
    }
    return result
  }

  @Test(arguments: scenarios)
  func unitsAreCountedOncePerModelAndPerLayer(_ s: Scenario) throws {
    let folder = TemporaryFolder()
    _ = try prune(
      s.model, .init(method: .structured, structure: s.structure, ratio: s.ratio, shrink: s.shrink), into: folder)
    let input = try Checkpoint.open(fixture(s.model))
    let output = try Checkpoint.open(folder.file("p"))
    let expected = try Self.expected(s, input: input)
    let measured = try Self.measured(s, input: input, output: output)
    // What was really removed adds up to the documented count.
    #expect(measured.values.reduce(Count(), +) == expected)

    let data = try Data(contentsOf: URL(fileURLWithPath: folder.file("p/" + Report.jsonFileName)))
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let totals = try #require((json["totals"] as? [String: Any])?["sparsity"] as? [String: Any])
    let reported = Count(
      removed: totals["units_removed"] as? Int ?? -1, total: totals["units_total"] as? Int ?? -1,
      headsRemoved: totals["attention_heads_removed"] as? Int, headsTotal: totals["attention_heads_total"] as? Int)
    #expect(reported == expected, "the model's units in the report")
    let unit: String =
      switch s.structure {
      case .mlp: "mlp_neuron"
      case .heads: expected.headsRemoved == nil ? "attention_head" : "key_value_head_group"
      case .rows: "row"
      case .columns: "column"
      }
    #expect(totals["unit"] as? String == unit)

    // Per layer: one entry per layer, matching the output, summing to the model.
    let layers = try #require(totals["layers"] as? [[String: Any]], "totals.sparsity.layers")
    var perLayer: [String: Count] = [:]
    for entry in layers {
      let key = (entry["layer"] as? Int).map(String.init) ?? (entry["name"] as? String ?? "?")
      #expect(perLayer[key] == nil, "layer \(key) listed twice")
      perLayer[key] = Count(
        removed: entry["units_removed"] as? Int ?? -1, total: entry["units_total"] as? Int ?? -1,
        headsRemoved: entry["attention_heads_removed"] as? Int, headsTotal: entry["attention_heads_total"] as? Int)
    }
    #expect(perLayer == measured)
    #expect(perLayer.values.reduce(Count(), +) == reported)

    // The Markdown report has the same per-layer table.
    let markdown = try String(contentsOfFile: folder.file("p/" + Report.markdownFileName), encoding: .utf8)
    for entry in layers {
      let label = (entry["layer"] as? Int).map(String.init) ?? "-"
      let row =
        "| \(label) | `\(entry["name"] as? String ?? "?")` | \(entry["units_removed"] as? Int ?? -1) | \(entry["units_total"] as? Int ?? -1) |"
      #expect(markdown.contains(row), "\(row) in the Markdown report")
    }
    #expect(markdown.contains("| all | | \(expected.removed) | \(expected.total) |"))
  }
}
