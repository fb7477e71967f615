import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// The CPU forward pass against transformers 5.24.0 (torch 2.15.0, float32, CPU): the goldens of
/// `Scripts/reference/make_forward_fixtures.py` hold, for three sequences of 7, 16 and 33 tokens,
/// every layer's output, the final hidden states, the logits (decoders) and the sentence
/// embeddings (encoders) of tiny random models in `Fixtures/models/`.
///
/// Tolerance: both sides compute in float32 but sum in different orders (OpenBLAS sgemm and our
/// loops against torch's kernels), so each dot product of k terms differs by a few ulps times
/// sqrt(k) (k <= 128 here: ~1e-6 relative), and every layer carries the error on. We measure
/// max|ours - theirs| / max|theirs| per tensor (printed) and require it under 1e-5: ten times the
/// largest measured (9.1e-7, Qwen3's layer outputs; BERT 3.8e-7), far below what any formula
/// error gives (a wrong RoPE frequency, norm epsilon or mask moves outputs by 1e-3 or more; the
/// sliding-window test below shows one).
@Suite struct ForwardTests {
  static let decoders = ["llama", "llama-tied", "mistral", "qwen2", "qwen3"]
  static let encoders = ["bert", "bert-mlm", "bert-st", "bert-st-cls"]
  static let tolerance: Float = 1e-5

  /// Golden tensors by name.
  struct Golden {
    let checkpoint: Checkpoint
    init(_ name: String) throws { checkpoint = try Checkpoint.open(fixture("golden/forward/\(name).safetensors")) }
    func floats(_ name: String) throws -> [Float] {
      let tensor = try #require(checkpoint.tensor(named: name), "\(name)")
      return Float32Conversion.floats(
        checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
    }
    func ids(_ s: Int) throws -> [Int32] {
      let tensor = try #require(checkpoint.tensor(named: "ids.\(s)"))
      let bytes = checkpoint.bytes(of: tensor)
      return (0..<(bytes.count / 8)).map { Int32(bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
    }
    var batch: TokenBatch { get throws { TokenBatch(try (0..<3).map { try ids($0) }) } }
  }

  /// max|a - b| / max|b|.
  static func relativeDifference(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    precondition(a.count == b.count)
    var difference: Float = 0
    var scale: Float = 0
    for (x, y) in zip(a, b) {
      difference = max(difference, abs(x - y))
      scale = max(scale, abs(y))
    }
    return difference / scale
  }

  final class Recorder: ActivationObserver {
    var layers: [HiddenStates] = []
    var observed: [[String]] = []
    var shapes: [(rows: Int, columns: Int)] = []
    func observe(modules: [String], inputs: UnsafeBufferPointer<Float>, rows: Int, columns: Int) {
      observed.append(modules)
      shapes.append((rows, columns))
      #expect(inputs.count == rows * columns)
    }
    func layerFinished(_ index: Int, of count: Int, hidden: HiddenStates) {
      #expect(index == layers.count && count == 2)
      layers.append(hidden)
    }
  }

  /// Every layer's output and the final hidden states of `model` on the golden batch, compared
  /// with the golden; returns the largest relative difference.
  func compareLayers(_ name: String, _ model: any ForwardModel, _ golden: Golden) throws -> (HiddenStates, Float) {
    let recorder = Recorder()
    let batch = try golden.batch
    let final = try model.finalHiddenStates(batch, observer: recorder)
    #expect(recorder.layers.count == model.layerCount)
    var worst: Float = 0
    for s in 0..<3 {
      let rows = (batch.offsets[s] * 64)..<(batch.offsets[s + 1] * 64)
      for (l, layer) in recorder.layers.enumerated() {
        let d = Self.relativeDifference(layer.values[rows], try golden.floats("layer.\(s).\(l)")[...])
        print("forward \(name) sequence \(s) layer \(l): max relative difference \(d)")
        worst = max(worst, d)
        #expect(d < Self.tolerance, "\(name) sequence \(s) layer \(l): \(d)")
      }
      let d = Self.relativeDifference(final.values[rows], try golden.floats("final.\(s)")[...])
      print("forward \(name) sequence \(s) final: max relative difference \(d)")
      worst = max(worst, d)
      #expect(d < Self.tolerance, "\(name) sequence \(s) final: \(d)")
    }
    return (final, worst)
  }

  @Test(arguments: decoders)
  func decoderMatchesTransformers(_ name: String) throws {
    let model = try ForwardModels.open(fixture("models/\(name)"))
    #expect(model.kind == .decoder && model.hiddenSize == 64 && model.layerCount == 2 && model.vocabularySize == 1024)
    let golden = try Golden(name)
    let (final, layersWorst) = try compareLayers(name, model, golden)
    let offsets = final.offsets
    var worst: Float = 0
    for s in 0..<3 {
      // In chunks of 5 rows, as callers chunk them.
      var logits: [Float] = []
      for start in stride(from: offsets[s], to: offsets[s + 1], by: 5) {
        logits += try model.logits(final, rows: start..<min(start + 5, offsets[s + 1]))
      }
      let d = Self.relativeDifference(logits[...], try golden.floats("logits.\(s)")[...])
      worst = max(worst, d)
      #expect(d < Self.tolerance, "\(name) sequence \(s) logits: \(d)")
    }
    print("forward \(name): layers and final max relative difference \(layersWorst), logits \(worst)")
  }

  @Test(arguments: encoders)
  func encoderMatchesTransformers(_ name: String) throws {
    let model = try ForwardModels.open(fixture("models/\(name)"))
    #expect(model.kind == .encoder && model.hiddenSize == 64 && model.layerCount == 2 && model.vocabularySize == 1024)
    let golden = try Golden(name)
    let (final, layersWorst) = try compareLayers(name, model, golden)
    let embeddings = try model.sentenceEmbeddings(final)
    #expect(embeddings.count == 3)
    var worst: Float = 0
    for s in 0..<3 {
      let d = Self.relativeDifference(embeddings[s][...], try golden.floats("embedding.\(s)")[...])
      worst = max(worst, d)
      #expect(d < Self.tolerance, "\(name) sequence \(s) embedding: \(d)")
    }
    if name == "bert-st" {
      for e in embeddings { #expect(abs(e.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5) }
    }
    print("forward \(name): layers and final max relative difference \(layersWorst), embeddings \(worst)")
  }

  /// The observer sees each distinct input of a layer's linear modules once, in forward order.
  @Test func observerSeesEachLinearInputOnce() throws {
    let model = try ForwardModels.open(fixture("models/llama"))
    let recorder = Recorder()
    _ = try model.finalHiddenStates(try Golden("llama").batch, observer: recorder)
    let expected = (0..<2).flatMap { l -> [[String]] in
      let p = "model.layers.\(l)."
      return [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"].map { p + $0 }, [p + "self_attn.o_proj"],
        [p + "mlp.gate_proj", p + "mlp.up_proj"], [p + "mlp.down_proj"],
      ]
    }
    #expect(recorder.observed == expected)
    // 56 tokens; o_proj reads 4 heads x head_dim 32; down_proj the intermediate 128.
    #expect(recorder.shapes.map(\.rows) == Array(repeating: 56, count: 8))
    #expect(recorder.shapes.map(\.columns) == [64, 128, 64, 128, 64, 128, 64, 128])

    let bert = try ForwardModels.open(fixture("models/bert-mlm"))
    let bertRecorder = Recorder()
    _ = try bert.finalHiddenStates(try Golden("bert-mlm").batch, observer: bertRecorder)
    #expect(bertRecorder.observed.count == 8)
    #expect(
      bertRecorder.observed.prefix(4) == [
        [
          "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.key",
          "bert.encoder.layer.0.attention.self.value",
        ],
        ["bert.encoder.layer.0.attention.output.dense"], ["bert.encoder.layer.0.intermediate.dense"],
        ["bert.encoder.layer.0.output.dense"],
      ])
  }

  /// A weight file alone opens too (its config.json beside it).
  @Test func opensAWeightFile() throws {
    let model = try ForwardModels.open(fixture("models/qwen3/model.safetensors"))
    #expect(model.architecture == "Qwen3ForCausalLM" && model.maxPositions == 128)
  }

  /// Every compressed form swiftcompress writes (quantized, sparse bitmask, factors, low-rank residual
  /// over quantized, NVFP4 on BF16) computes exactly what its decompressed copy computes: ModelWeights
  /// decodes each weight as decompress does, so the logits are bit-equal.
  @Test(arguments: ["w4a16", "nvfp4-bf16", "bitmask", "factors", "lowrank-residual"])
  func compressedRunsAsItsDecompressedCopy(_ form: String) throws {
    let folder = TemporaryFolder()
    let compressed = folder.file("c")
    let restored = folder.file("d")
    let pass: any CompressionPass
    var input = fixture("tiny-llama-f32")
    switch form {
    case "w4a16": pass = try QuantizePass(configuration: .init(scheme: .w4a16))
    case "nvfp4-bf16":
      pass = try QuantizePass(configuration: .init(scheme: .nvfp4))
      input = fixture("tiny-llama-bf16")
    case "bitmask":
      pass = try PrunePass(configuration: .init(method: .magnitude, sparsity: 0.5, sparseFormat: .bitmask))
    case "factors": pass = try FactorizePass(configuration: .init(rank: .rank(16)))
    default:
      pass = try LowRankResidualPass(configuration: .init(quantize: .init(scheme: .w4a16), rank: 8))
    }
    _ = try Compressor.run(
      pass: pass,
      options: CompressionOptions(
        input: input, output: compressed, selection: try TensorSelection(), command: "compress"))
    _ = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(
        input: compressed, output: restored, selection: try TensorSelection(), command: "decompress"))
    let batch = TokenBatch([[1, 5, 511, 0, 42, 7, 300], Array(0..<40).map { Int32($0 * 12 % 512) }])
    func logits(_ path: String) throws -> [Float] {
      let model = try ForwardModels.open(path)
      let hidden = try model.finalHiddenStates(batch, observer: nil)
      return try model.logits(hidden, rows: 0..<hidden.rows)
    }
    let a = try logits(compressed)
    let b = try logits(restored)
    #expect(a.count == 47 * 512)
    #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
    // And compression changed something.
    #expect(try logits(input) != a)
  }

  @Test func unsupportedArchitectureIsRefused() throws {
    let folder = TemporaryFolder()
    let model = folder.file("gpt2")
    try FileManager.default.copyItem(atPath: fixture("models/llama"), toPath: model)
    let config = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
      .replacingOccurrences(of: "LlamaForCausalLM", with: "GPT2LMHeadModel")
    try config.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
    do {
      _ = try ForwardModels.open(model)
      Issue.record("GPT2LMHeadModel opened")
    } catch let error as SwiftCompressError {
      #expect(error.category == .invalidInput)
      let message = error.localizedDescription
      #expect(message.contains("GPT2LMHeadModel"))
      for family in ForwardModels.decoderArchitectures + ForwardModels.encoderArchitectures {
        #expect(message.contains(family))
      }
    }
  }

  /// Mistral's sliding window (8) matters on the 16- and 33-token sequences: without it the
  /// outputs move far beyond the tolerance, and the 7-token one does not move at all.
  @Test func slidingWindowMatters() throws {
    let folder = TemporaryFolder()
    let model = folder.file("mistral")
    try FileManager.default.copyItem(atPath: fixture("models/mistral"), toPath: model)
    let config = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
      .replacingOccurrences(of: "\"sliding_window\": 8", with: "\"sliding_window\": null")
    try config.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
    let golden = try Golden("mistral")
    let batch = try golden.batch
    let final = try ForwardModels.open(model).finalHiddenStates(batch, observer: nil)
    let offsets = batch.offsets
    let short = Self.relativeDifference(final.values[0..<(offsets[1] * 64)], try golden.floats("final.0")[...])
    let long = Self.relativeDifference(final.values[(offsets[2] * 64)...], try golden.floats("final.2")[...])
    #expect(short < Self.tolerance && long > 1e-3, "\(short) \(long)")
  }

  /// Splitting the linear layers' columns and the attention heads over workers changes no bit.
  @Test func sameResultAtAnyJobCount() throws {
    let model = try ForwardModels.open(fixture("models/qwen2"))
    let batch = try Golden("qwen2").batch
    func run(_ jobs: Int) throws -> [UInt32] {
      try Parallel.withJobs(jobs) {
        let hidden = try model.finalHiddenStates(batch, observer: nil)
        return (hidden.values + (try model.logits(hidden, rows: 0..<hidden.rows))).map(\.bitPattern)
      }
    }
    #expect(try run(1) == run(3))
  }

  @Test func poolingModes() throws {
    let hidden = HiddenStates(values: [1, -2, 3, 4, -5, 6], rows: 3, width: 2, offsets: [0, 3])
    #expect(Pooling(mode: .mean).pool(hidden) == [[-1 / 3, 8 / 3]])
    #expect(Pooling(mode: .cls).pool(hidden) == [[1, -2]])
    #expect(Pooling(mode: .max).pool(hidden) == [[3, 6]])
    #expect(Pooling(mode: .lastToken).pool(hidden) == [[-5, 6]])
    #expect(Pooling(mode: .cls, normalize: true).pool(hidden)[0].map { ($0 * 1e6).rounded() } == [447214, -894427])
  }
}
