import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// A deterministic stand-in for a forward pass: token t's hidden row is row t of `embedding`
/// (vocabulary x width), passed through `layers` identity layers that each report the row to the
/// observer as the input of module "layers.i.proj"; the head is `head` (vocabulary x width).
final class FakeForwardModel: ForwardModel {
  let kind: ModelKind
  let architecture: String
  let vocabularySize: Int
  let maxPositions: Int? = 64
  let hiddenSize: Int
  let layerCount: Int
  let embedding: [Float]
  let head: [Float]
  /// Rows put through the head, for checking the chunking.
  var logitRows = 0

  init(kind: ModelKind = .decoder, vocabulary: Int, width: Int, layers: Int = 2, seed: UInt64, headSeed: UInt64? = nil)
  {
    self.kind = kind
    architecture = kind == .decoder ? "FakeForCausalLM" : "FakeModel"
    vocabularySize = vocabulary
    hiddenSize = width
    layerCount = layers
    var rng = SplitMix64(seed: seed)
    embedding = (0..<(vocabulary * width)).map { _ in rng.gaussian() }
    var headRNG = SplitMix64(seed: headSeed ?? seed &+ 1)
    head = (0..<(vocabulary * width)).map { _ in headRNG.gaussian() }
  }

  func finalHiddenStates(_ batch: TokenBatch, observer: (any ActivationObserver)?) throws -> HiddenStates {
    var values: [Float] = []
    for sequence in batch.sequences {
      for token in sequence { values += embedding[(Int(token) * hiddenSize)..<((Int(token) + 1) * hiddenSize)] }
    }
    let hidden = HiddenStates(values: values, rows: batch.tokenCount, width: hiddenSize, offsets: batch.offsets)
    for layer in 0..<layerCount {
      values.withUnsafeBufferPointer {
        observer?.observe(modules: ["layers.\(layer).proj"], inputs: $0, rows: batch.tokenCount, columns: hiddenSize)
      }
      observer?.layerFinished(layer, of: layerCount, hidden: hidden)
    }
    return hidden
  }

  func logits(_ hidden: HiddenStates, rows: Range<Int>) throws -> [Float] {
    logitRows += rows.count
    return Self.logits(hidden.values, width: hiddenSize, head: head, vocabulary: vocabularySize, rows: rows)
  }

  static func logits(_ hidden: [Float], width: Int, head: [Float], vocabulary: Int, rows: Range<Int>) -> [Float] {
    var result: [Float] = []
    for r in rows {
      for v in 0..<vocabulary {
        var sum: Float = 0
        for k in 0..<width { sum += hidden[r * width + k] * head[v * width + k] }
        result.append(sum)
      }
    }
    return result
  }

  func sentenceEmbeddings(_ hidden: HiddenStates) throws -> [[Float]] {
    (0..<(hidden.offsets.count - 1)).map { s in
      var mean = [Float](repeating: 0, count: hidden.width)
      let rows = hidden.offsets[s]..<hidden.offsets[s + 1]
      for r in rows {
        for k in 0..<hidden.width { mean[k] += hidden.values[r * hidden.width + k] / Float(rows.count) }
      }
      return mean
    }
  }
}

func samples(_ sequences: [[Int32]]) -> EvaluationSamples {
  EvaluationSamples(
    sequences: sequences, labels: sequences.indices.map { "line \($0 + 1)" },
    info: DataInfo(
      file: "test", format: .jsonTokens, fileSamples: sequences.count, samples: sequences.count,
      tokens: sequences.reduce(0) { $0 + $1.count }, mode: "truncate", seqLen: nil, seed: 0,
      tokenHash: EvaluationData.tokenHash(sequences)), warnings: [])
}

@Suite("Evaluation metrics")
struct EvaluationMetricsTests {
  /// log softmax of [0, ln 3] is [ln 1/4, ln 3/4]; to 1e-15.
  @Test func logSoftmaxOfAKnownCase() {
    let result = EvaluationMath.logSoftmax([0, Float(log(3.0))])
    #expect(abs(result[0] - log(0.25)) < 1e-7)  // ln 3 rounded to Float: 1e-7
    #expect(abs(result[1] - log(0.75)) < 1e-7)
    let shifted = EvaluationMath.logSoftmax([1000, 1000])  // no overflow: the max is subtracted
    #expect(shifted == [-log(2.0), -log(2.0)])
  }

  /// KL of identical distributions is exactly 0; KL([1/2, 1/2] || [1/4, 3/4]) by hand.
  @Test func klDivergence() {
    let p = EvaluationMath.logSoftmax([0.3, -1.2, 2.5, 0])
    #expect(EvaluationMath.klDivergence(p, p) == 0)
    let half = [log(0.5), log(0.5)]
    let q = [log(0.25), log(0.75)]
    let expected = 0.5 * log(2.0) + 0.5 * log(0.5 / 0.75)
    #expect(abs(EvaluationMath.klDivergence(half, q) - expected) < 1e-15)
    // A zero probability contributes nothing, whatever q says there.
    #expect(EvaluationMath.klDivergence([0, -.infinity], [log(0.5), log(0.5)]) == log(2.0))
  }

  /// Percentiles interpolate linearly between closest ranks, as numpy.percentile does:
  /// numpy.percentile([1, 2, 3, 4], [50, 99]) = [2.5, 3.97].
  @Test func percentilesAsNumpy() {
    let values: [Double] = [1, 2, 3, 4]
    #expect(EvaluationMath.percentile(sorted: values, 0.5) == 2.5)
    #expect(abs(EvaluationMath.percentile(sorted: values, 0.99) - 3.97) < 1e-12)
    #expect(EvaluationMath.percentile(sorted: values, 0) == 1)
    #expect(EvaluationMath.percentile(sorted: values, 1) == 4)
    let summary = DistributionSummary([4, 1, 3, 2])
    #expect(summary.median == 2.5 && summary.maximum == 4 && summary.minimum == 1 && summary.mean == 2.5)
    // llama-perplexity's ±: sqrt((mean(x²) - mean²) / (n - 1)) = sqrt((7.5 - 6.25) / 3).
    #expect(abs(summary.uncertainty! - (1.25 / 3).squareRoot()) < 1e-15)
  }

  /// Ties get average ranks; Spearman of [1, 2, 2, 3] and [1, 2, 3, 4] by hand: ranks
  /// [1, 2.5, 2.5, 4] and [1, 2, 3, 4], Pearson 4.5 / sqrt(4.5 x 5) (scipy.stats.spearmanr gives
  /// the same 0.9486832980505138).
  @Test func spearmanWithTies() {
    #expect(EvaluationMath.ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4])
    #expect(EvaluationMath.ranks([3, 1, 3, 3]) == [3, 1, 3, 3])
    let rho = EvaluationMath.spearman([1, 2, 2, 3], [1, 2, 3, 4])!
    #expect(abs(rho - 4.5 / (4.5 * 5.0).squareRoot()) < 1e-15)
    #expect(abs(rho - 0.9486832980505138) < 1e-15)
    #expect(EvaluationMath.spearman([1, 2, 3], [3, 2, 1]) == -1)
    #expect(EvaluationMath.spearman([1, 1, 1], [1, 2, 3]) == nil)  // a constant side
  }

  /// Cosine of a vector with itself is exactly 1; orthogonal 0; opposite -1.
  @Test func cosine() {
    let a: [Float] = [0.1, -3, 7.25, 1e-3]
    #expect(EvaluationMath.cosine(a, a) == 1)
    #expect(EvaluationMath.cosine([1, 0], [0, 2]) == 0)
    #expect(EvaluationMath.cosine([1, 2], [-1, -2]) == -1)
    #expect(EvaluationMath.pairwiseCosines([[1, 0], [0, 1], [1, 1]]).count == 3)
  }
}

@Suite("Gate messages")
struct EvaluationGateMessageTests {
  /// The limit as given, the value with enough digits to differ from it.
  @Test func enoughDigits() {
    let cosine = GateResult(gate: "min_cosine", limit: 0.9999999, value: 0.99998271, passed: false)
    #expect(cosine.summary == "min_cosine 0.9999999: measured 0.99998271 (failed)")
    let close = GateResult(gate: "min_cosine", limit: 0.9999999, value: 0.99999989, passed: false)
    #expect(close.summary == "min_cosine 0.9999999: measured 0.99999989 (failed)")
    let closer = GateResult(gate: "max_kld", limit: 0.1, value: 0.1000000001, passed: false)
    #expect(closer.summary == "max_kld 0.1: measured 0.1000000001 (failed)")
    #expect(
      GateResult(gate: "max_kld", limit: 1e-9, value: nil, passed: false).summary.hasSuffix("measured - (failed)"))
  }
}

@Suite("Evaluator")
struct EvaluatorTests {
  /// A model against itself: KL exactly 0 at every position, top-1 agreement 1, equal perplexities.
  @Test func decoderAgainstItself() throws {
    let model = FakeForwardModel(vocabulary: 7, width: 4, seed: 1)
    let data = samples([[1, 2, 3, 4], [5, 6], [0, 1, 2]])
    let report = try Evaluator.evaluate(reference: model, candidate: model, paths: ("a", "a"), samples: data)
    let d = try #require(report.decoder)
    #expect(d.positions == 3 + 1 + 2)
    #expect(d.kld.mean == 0 && d.kld.maximum == 0 && d.kld.minimum == 0)
    #expect(d.sameTop.mean == 1)
    #expect(d.referencePerplexity == d.candidatePerplexity)
    #expect(d.meanLogPerplexityRatio.mean == 0)
  }

  /// Two different heads: every figure against a direct computation over the positions, one
  /// token at a time, with no batching or chunking; 1e-12 relative (the same Double arithmetic in
  /// another order).
  @Test func decoderFiguresMatchADirectComputation() throws {
    let reference = FakeForwardModel(vocabulary: 11, width: 5, seed: 2)
    let candidate = FakeForwardModel(vocabulary: 11, width: 5, seed: 2, headSeed: 99)
    let sequences: [[Int32]] = [[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 0], [3]]
    let report = try Evaluator.evaluate(
      reference: reference, candidate: candidate, paths: ("r", "c"), samples: samples(sequences), batchTokens: 4)
    var kl: [Double] = []
    var nllP: [Double] = []
    var nllQ: [Double] = []
    var same = 0
    for sequence in sequences where sequence.count > 1 {
      for t in 0..<(sequence.count - 1) {
        let e = Array(reference.embedding[(Int(sequence[t]) * 5)..<((Int(sequence[t]) + 1) * 5)])
        let p = EvaluationMath.logSoftmax(
          FakeForwardModel.logits(e, width: 5, head: reference.head, vocabulary: 11, rows: 0..<1))
        let q = EvaluationMath.logSoftmax(
          FakeForwardModel.logits(e, width: 5, head: candidate.head, vocabulary: 11, rows: 0..<1))
        var sum = 0.0
        for i in 0..<11 { sum += exp(p[i]) * (p[i] - q[i]) }
        kl.append(sum)
        nllP.append(-p[Int(sequence[t + 1])])
        nllQ.append(-q[Int(sequence[t + 1])])
        if p.indices.max(by: { p[$0] < p[$1] }) == q.indices.max(by: { q[$0] < q[$1] }) { same += 1 }
      }
    }
    let d = try #require(report.decoder)
    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(1, abs(b)) }
    #expect(d.positions == kl.count)
    #expect(close(d.kld.mean, kl.reduce(0, +) / Double(kl.count)))
    #expect(close(d.kld.maximum, kl.max()!))
    #expect(close(d.referencePerplexity.mean, exp(nllP.reduce(0, +) / Double(nllP.count))))
    #expect(close(d.candidatePerplexity.mean, exp(nllQ.reduce(0, +) / Double(nllQ.count))))
    #expect(d.sameTop.mean == Double(same) / Double(kl.count))
    #expect(d.kld.minimum >= 0)
  }

  /// Encoders: a model against itself gives cosine 1 and Spearman 1.
  @Test func encoderAgainstItself() throws {
    let model = FakeForwardModel(kind: .encoder, vocabulary: 9, width: 6, seed: 3)
    let data = samples([[1, 2, 3], [4, 5], [6, 7, 8], [0, 2]])
    let report = try Evaluator.evaluate(reference: model, candidate: model, paths: ("a", "a"), samples: data)
    let e = try #require(report.encoder)
    #expect(e.samples == 4 && e.cosineMean == 1 && e.cosineMin == 1 && e.spearman == 1)
    #expect(report.decoder == nil)
  }

  /// A different architecture or vocabulary is refused before anything is computed.
  @Test func incompatibleCandidatesAreRefused() throws {
    let reference = FakeForwardModel(vocabulary: 7, width: 4, seed: 1)
    let otherVocabulary = FakeForwardModel(vocabulary: 8, width: 4, seed: 1)
    let encoder = FakeForwardModel(kind: .encoder, vocabulary: 7, width: 4, seed: 1)
    for candidate in [otherVocabulary, encoder] {
      #expect(throws: SwiftCompressError.self) {
        try Evaluator.evaluate(
          reference: reference, candidate: candidate, paths: ("r", "c"), samples: samples([[1, 2]]))
      }
      #expect(candidate.logitRows == 0)
    }
  }

  /// Gates: each checked against its figure; one the kind cannot measure fails.
  @Test func gates() throws {
    let reference = FakeForwardModel(vocabulary: 11, width: 5, seed: 2)
    let candidate = FakeForwardModel(vocabulary: 11, width: 5, seed: 2, headSeed: 99)
    let report = try Evaluator.evaluate(
      reference: reference, candidate: candidate, paths: ("r", "c"), samples: samples([[1, 2, 3, 4, 5]]),
      gates: EvaluationGates(maxKLD: 1e-9, minTop1: 0))
    #expect(report.gates.map(\.gate) == ["max_kld", "min_top1"])
    #expect(report.gates.map(\.passed) == [false, true])
    #expect(!report.passed)
    #expect(EvaluationGates(minCosine: 0.9).check(report).map(\.passed) == [false])
    #expect(throws: SwiftCompressError.self) { try EvaluationGates(minCosine: 0.9).validate(for: .decoder) }
    #expect(throws: SwiftCompressError.self) { try EvaluationGates(minTop1: 1.5).validate() }
    // The report renders in every format.
    #expect(EvaluationReporter.text(report).contains("Same top p"))
    #expect(EvaluationReporter.render(report, as: .markdown).contains("| Mean KLD |"))
    #expect(EvaluationReporter.render(report, as: .html).contains("<td>Median KLD</td>"))
    let decoded = try JSONDecoder().decode(
      EvaluationReport.self, from: Data(EvaluationReporter.render(report, as: .json).utf8))
    #expect(decoded == report)
  }

  /// Logits go through the head in chunks, and only rows that have a next token.
  @Test func batchesAndChunks() {
    #expect(evaluationBatches([[1, 2], [3], [4, 5, 6], [7]], batchTokens: 3) == [0..<2, 2..<3, 3..<4])
    #expect(evaluationBatches([[1, 2, 3, 4, 5]], batchTokens: 2) == [0..<1])
  }
}

@Suite("Activation statistics")
struct ActivationStatisticsTests {
  /// Two batches through the fake model against sums computed directly in Double.
  @Test func statisticsMatchADirectComputation() throws {
    let model = FakeForwardModel(vocabulary: 9, width: 3, layers: 1, seed: 4)
    let statistics = ActivationStatistics(gram: true)
    let batches: [[[Int32]]] = [[[1, 2, 3]], [[4, 5], [6]]]
    for batch in batches { _ = try model.finalHiddenStates(TokenBatch(batch), observer: statistics) }
    let a = try #require(statistics.modules["layers.0.proj"])
    let rows = batches.flatMap { $0.flatMap { $0 } }.map { t in
      (0..<3).map { Double(model.embedding[Int(t) * 3 + $0]) }
    }
    #expect(a.count == 6)
    for c in 0..<3 {
      let squares = rows.reduce(0.0) { $0 + $1[c] * $1[c] }
      #expect(abs(a.sumSquares[c] - squares) <= 1e-12 * squares)
      #expect(abs(a.sumAbs[c] - rows.reduce(0.0) { $0 + abs($1[c]) }) <= 1e-12)
    }
    let gram = try #require(a.gramMatrix())
    for i in 0..<3 {
      for j in 0..<3 {
        let direct = rows.reduce(0.0) { $0 + $1[i] * $1[j] }
        #expect(abs(Double(gram[i * 3 + j]) - direct) <= 1e-6 * max(1, abs(direct)), "\(i),\(j)")
      }
      // A batch's products are summed in Float32 (ssyrk), the batches in Double: the diagonal
      // is the Double sum of squares within Float32 rounding of each batch's sum.
      let diagonal = Double(gram[i * 3 + i])
      #expect(abs(diagonal - a.sumSquares[i]) <= 4 * Double(Float.ulpOfOne) * a.sumSquares[i])
    }
  }

  /// Sums are accumulated in Double: 4096² + 4 x 1² = 16777220 exactly, where a Float sum gives
  /// 16777216 (each + 1 rounds away at 2^24).
  @Test func accumulationIsInDouble() {
    let statistics = ActivationStatistics(gram: true)
    for value: Float in [4096, 1, 1, 1, 1] {
      [value].withUnsafeBufferPointer { statistics.observe(modules: ["m"], inputs: $0, rows: 1, columns: 1) }
    }
    var floatSum: Float = 0
    for value: Float in [4096, 1, 1, 1, 1] { floatSum += value * value }
    #expect(floatSum == 16_777_216)
    #expect(statistics.modules["m"]!.sumSquares == [16_777_220])
    #expect(statistics.modules["m"]!.gramMatrix() == [16_777_220])
  }

  /// Modules sharing an input share its sums; lm_head is left out.
  @Test func sharedInputsAndExclusions() {
    let statistics = ActivationStatistics(gram: false)
    [1, 2, 3, 4].map(Float.init).withUnsafeBufferPointer {
      statistics.observe(modules: ["q", "k", "v"], inputs: $0, rows: 2, columns: 2)
      statistics.observe(modules: ["lm_head"], inputs: $0, rows: 2, columns: 2)
    }
    #expect(statistics.order == ["q", "k", "v"])
    #expect(statistics.modules["q"]!.sumSquares == [10, 20])
    #expect(statistics.modules["v"] === statistics.modules["q"])
    #expect(statistics.modules["q"]!.gram == nil)
  }

  /// The file: names, dtypes, shapes, metadata; prune and factorize read its norms.
  @Test func fileRoundTripAndCalibrationReader() throws {
    let folder = TemporaryFolder()
    let statistics = ActivationStatistics(gram: true)
    [3, 4, 0, 1].map(Float.init).withUnsafeBufferPointer {
      statistics.observe(modules: ["model.layers.0.mlp.up_proj"], inputs: $0, rows: 2, columns: 2)
    }
    let path = folder.file("stats.safetensors")
    try statistics.write(to: path, metadata: ["model_path": "m"])
    let file = try Checkpoint.open(path)
    let m = "model.layers.0.mlp.up_proj"
    #expect(
      file.tensors.map(\.name).sorted()
        == [m + ".input_count", m + ".input_gram", m + ".input_mean_abs", m + ".input_sum_squares"])
    #expect(file.tensor(named: m + ".input_count")!.info.dtype == .i64)
    #expect(file.tensor(named: m + ".input_gram")!.info.shape == [2, 2])
    #expect(file.metadata?["format"] == ActivationStatistics.formatName)
    #expect(file.metadata?["model_path"] == "m")
    let meanAbs = Float32Conversion.floats(
      file.bytes(of: file.tensor(named: m + ".input_mean_abs")!), dtype: .f32, count: 2)
    #expect(meanAbs == [1.5, 2.5])
    let norms = try CalibrationStatistics.load(path, modules: [(m, 2)])
    #expect(norms[m] == [3, 17.0.squareRoot()].map { Float($0) })
    // No temporary file is left.
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["stats.safetensors"])
  }
}

@Suite("Evaluation data")
struct EvaluationDataTests {
  func write(_ text: String, _ folder: TemporaryFolder, _ name: String = "data.txt") -> String {
    let path = folder.file(name)
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    return path
  }

  @Test func textAndJSONLinesAreDetected() throws {
    let folder = TemporaryFolder()
    let text = try EvaluationData.readText(write("first\n\n  \nsecond {\"text\": 1}\n", folder))
    #expect(text.format == .textLines && text.texts == ["first", "second {\"text\": 1}"])
    #expect(text.labels == ["line 1", "line 4"])
    let json = try EvaluationData.readText(write("{\"text\": \"a\"}\n{\"text\": \"b\\nc\", \"id\": 2}\n", folder, "j"))
    #expect(json.format == .jsonText && json.texts == ["a", "b\nc"])
    #expect(throws: SwiftCompressError.self) {
      try EvaluationData.readText(write("{\"text\": \"a\"}\nplain\n", folder, "mixed"))
    }
  }

  @Test func nonUTF8AndEmptyFilesNameTheProblem() {
    let folder = TemporaryFolder()
    let path = folder.file("bad.txt")
    _ = FileManager.default.createFile(atPath: path, contents: Data([0x61, 0x0A, 0x62, 0x0A, 0xFF, 0x0A]))
    #expect(throws: SwiftCompressError.invalidFile(path: path, reason: "line 3 is not UTF-8 text")) {
      try EvaluationData.readText(path)
    }
    #expect(throws: SwiftCompressError.self) { try EvaluationData.readText(write("\n\n", folder, "empty")) }
  }

  @Test func tokenFiles() throws {
    let folder = TemporaryFolder()
    let jsonl = try EvaluationData.readTokens(write("[1, 2, 3]\n{\"input_ids\": [4]}\n", folder, "t.jsonl"))
    #expect(jsonl.ids == [[1, 2, 3], [4]] && jsonl.format == .jsonTokens)
    let path = folder.file("t.safetensors")
    let writer = try SafeTensorsWriter(
      destination: path, tensors: [PlannedTensor(name: "input_ids", dtype: .i64, shape: [2, 3])])
    try [Int64](arrayLiteral: 1, 2, 3, 4, 5, 6).withUnsafeBytes { try writer.write("input_ids", $0) }
    try writer.finish()
    let st = try EvaluationData.readTokens(path)
    #expect(st.ids == [[1, 2, 3], [4, 5, 6]] && st.format == .safetensorsTokens)
    #expect(throws: SwiftCompressError.self) { try EvaluationData.readTokens(write("[1, \"a\"]\n", folder, "x")) }
  }

  /// The draw is deterministic, without replacement, in file order, and depends on the seed.
  @Test func drawIsSeededAndSorted() {
    let a = EvaluationData.draw(5, of: 100, seed: 7)
    #expect(a == EvaluationData.draw(5, of: 100, seed: 7))
    #expect(a == a.sorted() && Set(a).count == 5)
    #expect(a != EvaluationData.draw(5, of: 100, seed: 8))
    #expect(EvaluationData.draw(nil, of: 3, seed: 0) == [0, 1, 2])
    #expect(EvaluationData.draw(10, of: 3, seed: 0) == [0, 1, 2])
  }

  @Test func truncationPackingAndVocabulary() throws {
    let raw = RawSamples(
      path: "f", format: .jsonTokens, texts: [], ids: [[1, 2, 3, 4, 5], [6, 7], [8, 9, 1]],
      labels: ["line 1", "line 2", "line 3"])
    let truncated = try EvaluationData.prepare(
      raw, options: SamplingOptions(seqLen: 3), vocabularySize: 10, maxPositions: nil
    ) { _ in [] }
    #expect(truncated.sequences == [[1, 2, 3], [6, 7], [8, 9, 1]])
    #expect(truncated.info.mode == "truncate" && truncated.info.tokens == 8)
    let packed = try EvaluationData.prepare(
      raw, options: SamplingOptions(seqLen: 4, pack: true), vocabularySize: 10, maxPositions: nil
    ) { _ in [] }
    #expect(packed.sequences == [[1, 2, 3, 4], [5, 6, 7, 8]] && packed.info.mode == "pack")
    // Longer than the model's positions: truncated, with a warning.
    let capped = try EvaluationData.prepare(raw, options: SamplingOptions(), vocabularySize: 10, maxPositions: 4) {
      _ in []
    }
    #expect(capped.sequences[0] == [1, 2, 3, 4] && capped.warnings.count == 1)
    // An id outside the vocabulary names the sample.
    #expect(
      throws: SwiftCompressError.invalidFile(
        path: "f",
        reason:
          "sample at line 3 holds token id 9, outside the model's vocabulary of 9 ids (0..<9); tokenize with the model's own tokenizer"
      )
    ) {
      try EvaluationData.prepare(raw, options: SamplingOptions(), vocabularySize: 9, maxPositions: nil) { _ in [] }
    }
    // Text goes through the encoder given.
    let text = RawSamples(path: "t", format: .textLines, texts: ["ab", "c"], ids: [], labels: ["line 1", "line 2"])
    let encoded = try EvaluationData.prepare(text, options: SamplingOptions(), vocabularySize: 300, maxPositions: nil) {
      $0.unicodeScalars.map { Int($0.value) }
    }
    #expect(encoded.sequences == [[97, 98], [99]])
  }
}

/// A stand-in model that replays stored logits and embeddings: row r of the batch's hidden
/// states is the global row index, the head returns the stored rows.
final class ReplayForwardModel: ForwardModel {
  let kind: ModelKind
  let architecture = "Replay"
  let vocabularySize: Int
  let maxPositions: Int? = nil
  let hiddenSize = 1
  let layerCount = 1
  let logitRows: [Float]
  let embeddings: [[Float]]
  /// The first global row (or sequence) of the next batch.
  var nextRow = 0
  var nextSequence = 0

  init(kind: ModelKind, vocabulary: Int, logits: [Float], embeddings: [[Float]]) {
    self.kind = kind
    vocabularySize = vocabulary
    logitRows = logits
    self.embeddings = embeddings
  }

  func finalHiddenStates(_ batch: TokenBatch, observer: (any ActivationObserver)?) throws -> HiddenStates {
    defer { nextRow += batch.tokenCount }
    return HiddenStates(
      values: (0..<batch.tokenCount).map { Float(nextRow + $0) }, rows: batch.tokenCount, width: 1,
      offsets: batch.offsets)
  }

  func logits(_ hidden: HiddenStates, rows: Range<Int>) throws -> [Float] {
    rows.flatMap { r in
      let global = Int(hidden.values[r])
      return logitRows[(global * vocabularySize)..<((global + 1) * vocabularySize)]
    }
  }

  func sentenceEmbeddings(_ hidden: HiddenStates) throws -> [[Float]] {
    let count = hidden.offsets.count - 1
    defer { nextSequence += count }
    return Array(embeddings[nextSequence..<(nextSequence + count)])
  }
}

@Suite("Evaluation metrics against numpy")
struct EvaluationMetricsGoldenTests {
  static let folder = fixture("golden/evaluation")

  func arrays() throws -> (file: Checkpoint, json: [String: Any]) {
    let file = try Checkpoint.open(Self.folder + "/metrics.safetensors")
    let data = try #require(FileManager.default.contents(atPath: Self.folder + "/metrics.json"))
    return (file, try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any]))
  }

  func floats(_ file: Checkpoint, _ name: String) throws -> [Float] {
    let tensor = try #require(file.tensor(named: name))
    return Float32Conversion.floats(file.bytes(of: tensor), dtype: .f32, count: tensor.info.elementCount)
  }

  func integers(_ file: Checkpoint, _ name: String) throws -> [Int] {
    let tensor = try #require(file.tensor(named: name))
    let bytes = file.bytes(of: tensor)
    return (0..<(tensor.info.elementCount)).map {
      Int(bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))
    }
  }

  /// Every decoder figure, with llama-perplexity's ± and numpy's percentiles, on seeded logits
  /// (Scripts/reference/make_evaluation_goldens.py): to 1e-12 relative (the same Double
  /// arithmetic, summed in another order), over batches of 5 tokens.
  @Test func decoderFigures() throws {
    let (file, json) = try arrays()
    let tokens = try integers(file, "tokens").map(Int32.init)
    var sequences: [[Int32]] = []
    var start = 0
    for length in try integers(file, "lengths") {
      sequences.append(Array(tokens[start..<(start + length)]))
      start += length
    }
    let reference = ReplayForwardModel(
      kind: .decoder, vocabulary: 50, logits: try floats(file, "reference"), embeddings: [])
    let candidate = ReplayForwardModel(
      kind: .decoder, vocabulary: 50, logits: try floats(file, "candidate"), embeddings: [])
    let report = try Evaluator.evaluate(
      reference: reference, candidate: candidate, paths: ("r", "c"), samples: samples(sequences), batchTokens: 5)
    let d = try #require(report.decoder)
    let expected = json["decoder"] as! [String: Any]
    let kld = expected["kld"] as! [String: Double]
    func close(_ a: Double?, _ b: Double?, _ label: String) {
      guard let a, let b else {
        Issue.record("\(label): missing")
        return
      }
      #expect(abs(a - b) <= 1e-12 * max(1, abs(b)), "\(label): \(a) vs \(b)")
    }
    #expect(d.positions == expected["positions"] as? Int)
    close(d.kld.mean, kld["mean"], "mean")
    close(d.kld.uncertainty, kld["uncertainty"], "±")
    let percentiles: [(Double, String)] = [
      (d.kld.maximum, "max"), (d.kld.p99_9, "p99.9"), (d.kld.p99, "p99"), (d.kld.p95, "p95"), (d.kld.p90, "p90"),
      (d.kld.median, "median"), (d.kld.p10, "p10"), (d.kld.p5, "p5"), (d.kld.p1, "p1"), (d.kld.p0_1, "p0.1"),
    ]
    for (value, key) in percentiles { close(value, kld[key], key) }
    #expect(d.kld.minimum == 0)  // the position whose logits are equal
    close(d.referencePerplexity.mean, expected["reference_perplexity"] as? Double, "PPL(base)")
    close(d.referencePerplexity.uncertainty, expected["reference_perplexity_uncertainty"] as? Double, "PPL ±")
    close(d.candidatePerplexity.mean, expected["candidate_perplexity"] as? Double, "PPL(Q)")
    close(d.meanLogPerplexityRatio.mean, expected["mean_ln_ppl_ratio"] as? Double, "ln ratio")
    close(d.deltaP.mean, expected["delta_p_mean"] as? Double, "Δp")
    close(d.sameTop.mean, expected["same_top_p"] as? Double, "same top")
    close(d.sameTop.uncertainty, expected["same_top_p_uncertainty"] as? Double, "same top ±")
  }

  /// Encoder figures on seeded embeddings with tied similarities: cosines to 1e-12, Spearman
  /// (scipy.stats.spearmanr) to 1e-12.
  @Test func encoderFigures() throws {
    let (file, json) = try arrays()
    func rows(_ name: String) throws -> [[Float]] {
      let values = try floats(file, name)
      return (0..<6).map { Array(values[($0 * 8)..<(($0 + 1) * 8)]) }
    }
    let reference = ReplayForwardModel(
      kind: .encoder, vocabulary: 50, logits: [], embeddings: try rows("embeddings_reference"))
    let candidate = ReplayForwardModel(
      kind: .encoder, vocabulary: 50, logits: [], embeddings: try rows("embeddings_candidate"))
    let report = try Evaluator.evaluate(
      reference: reference, candidate: candidate, paths: ("r", "c"), samples: samples((0..<6).map { [Int32($0)] }),
      batchTokens: 4)
    let e = try #require(report.encoder)
    let expected = json["encoder"] as! [String: Double]
    #expect(abs(e.cosineMean - expected["cosine_mean"]!) <= 1e-12)
    #expect(abs(e.cosineMin - expected["cosine_min"]!) <= 1e-12)
    #expect(abs(e.spearman! - expected["spearman"]!) <= 1e-12)
  }
}
