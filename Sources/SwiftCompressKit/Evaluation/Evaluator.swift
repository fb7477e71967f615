import CheckpointIO
import Foundation

/// Limits on an evaluation; a failed one makes `evaluate` (and `run` with an `evaluate:` block)
/// exit 3 after the figures are printed and written.
public struct EvaluationGates: Codable, Sendable, Equatable {
  /// Largest mean KL(P_ref || P_cand) (decoders).
  public var maxKLD: Double?
  /// Smallest share of positions where both argmax agree (decoders).
  public var minTop1: Double?
  /// Smallest mean cosine of the sentence embeddings (encoders).
  public var minCosine: Double?

  public init(maxKLD: Double? = nil, minTop1: Double? = nil, minCosine: Double? = nil) {
    self.maxKLD = maxKLD
    self.minTop1 = minTop1
    self.minCosine = minCosine
  }

  enum CodingKeys: String, CodingKey {
    case maxKLD = "max_kld"
    case minTop1 = "min_top1"
    case minCosine = "min_cosine"
  }

  public var isEmpty: Bool { maxKLD == nil && minTop1 == nil && minCosine == nil }

  /// Refuses limits that are not numbers, or gates the model kind cannot measure.
  public func validate(for kind: ModelKind? = nil) throws(SwiftCompressError) {
    for (option, value) in [("--max-kld", maxKLD), ("--min-top1", minTop1), ("--min-cosine", minCosine)] {
      if let value, !value.isFinite {
        throw .invalidOption(option: option, reason: "must be a finite number, not \(value)")
      }
    }
    if let minTop1, !(0...1).contains(minTop1) {
      throw .invalidOption(option: "--min-top1", reason: "is a share of positions in [0, 1], not \(minTop1)")
    }
    if kind == .encoder, maxKLD != nil || minTop1 != nil {
      throw .invalidOption(
        option: maxKLD != nil ? "--max-kld" : "--min-top1",
        reason: "applies to decoders (next-token distributions); these are encoders: gate on --min-cosine")
    }
    if kind == .decoder, minCosine != nil {
      throw .invalidOption(
        option: "--min-cosine",
        reason: "applies to encoders (sentence embeddings); these are decoders: gate on --max-kld or --min-top1")
    }
  }

  /// Each gate set, checked against the figures; a gate whose figure was not measured fails.
  public func check(_ report: EvaluationReport) -> [GateResult] {
    var results: [GateResult] = []
    if let limit = maxKLD {
      let value = report.decoder?.kld.mean
      results.append(
        GateResult(gate: "max_kld", limit: limit, value: value, passed: value.map { $0 <= limit } ?? false))
    }
    if let limit = minTop1 {
      let value = report.decoder?.sameTop.mean
      results.append(
        GateResult(gate: "min_top1", limit: limit, value: value, passed: value.map { $0 >= limit } ?? false))
    }
    if let limit = minCosine {
      let value = report.encoder?.cosineMean
      results.append(
        GateResult(gate: "min_cosine", limit: limit, value: value, passed: value.map { $0 >= limit } ?? false))
    }
    return results
  }
}

/// A model as the report names it.
public struct EvaluatedModel: Codable, Sendable, Equatable {
  public var path: String
  public var architecture: String
  public var vocabularySize: Int

  public init(path: String, architecture: String, vocabularySize: Int) {
    self.path = path
    self.architecture = architecture
    self.vocabularySize = vocabularySize
  }

  enum CodingKeys: String, CodingKey {
    case path, architecture
    case vocabularySize = "vocab_size"
  }
}

/// The result of `evaluate`: written as JSON, Markdown or HTML.
public struct EvaluationReport: Codable, Sendable, Equatable {
  public var tool = "swiftcompress"
  public var version = SwiftCompressVersion.current
  public var command = "evaluate"
  public var kind: String
  public var reference: EvaluatedModel
  public var candidate: EvaluatedModel
  public var data: DataInfo
  public var decoder: DecoderFigures?
  public var encoder: EncoderFigures?
  public var gates: [GateResult] = []

  public var passed: Bool { gates.allSatisfy(\.passed) }
}

/// Where an evaluation or a calibration is.
public struct EvaluationProgress: Sendable {
  /// "reference", "candidate" or "model".
  public var model: String
  public var layer: Int
  public var layers: Int
  /// Tokens of the batches finished before this one, and the batch's.
  public var tokensDone: Int
  public var batchTokens: Int
  public var tokenCount: Int

  public init(model: String, layer: Int, layers: Int, tokensDone: Int, batchTokens: Int, tokenCount: Int) {
    self.model = model
    self.layer = layer
    self.layers = layers
    self.tokensDone = tokensDone
    self.batchTokens = batchTokens
    self.tokenCount = tokenCount
  }
}

/// Groups consecutive sequences into batches of at most `batchTokens` tokens (a longer sequence
/// is a batch by itself).
public func evaluationBatches(_ sequences: [[Int32]], batchTokens: Int) -> [Range<Int>] {
  var result: [Range<Int>] = []
  var start = 0
  var tokens = 0
  for (i, sequence) in sequences.enumerated() {
    if i > start && tokens + sequence.count > batchTokens {
      result.append(start..<i)
      start = i
      tokens = 0
    }
    tokens += sequence.count
  }
  if start < sequences.count { result.append(start..<sequences.count) }
  return result
}

/// Forwards `layerFinished` to a progress callback.
final class ProgressObserver: ActivationObserver {
  let model: String
  let tokensDone: Int
  let batchTokens: Int
  let tokenCount: Int
  let inner: (any ActivationObserver)?
  let progress: (EvaluationProgress) -> Void

  init(
    model: String, tokensDone: Int, batchTokens: Int, tokenCount: Int, inner: (any ActivationObserver)?,
    progress: @escaping (EvaluationProgress) -> Void
  ) {
    self.model = model
    self.tokensDone = tokensDone
    self.batchTokens = batchTokens
    self.tokenCount = tokenCount
    self.inner = inner
    self.progress = progress
  }

  func observe(modules: [String], inputs: UnsafeBufferPointer<Float>, rows: Int, columns: Int) {
    inner?.observe(modules: modules, inputs: inputs, rows: rows, columns: columns)
  }

  func layerFinished(_ index: Int, of count: Int, hidden: HiddenStates) {
    inner?.layerFinished(index, of: count, hidden: hidden)
    progress(
      EvaluationProgress(
        model: model, layer: index + 1, layers: count, tokensDone: tokensDone, batchTokens: batchTokens,
        tokenCount: tokenCount))
  }
}

/// Runs a reference and a candidate model on the same samples and compares their outputs.
public enum Evaluator {
  /// Default tokens per forward batch.
  public static let defaultBatchTokens = 4096
  /// Largest logits chunk, in values: rows are put through the head this many values at a time.
  public static let logitsChunkValues = 1 << 22

  /// Refuses (exit 65) a candidate that computes something else than the reference.
  public static func checkCompatible(
    reference: any ForwardModel, candidate: any ForwardModel, paths: (String, String)
  ) throws(SwiftCompressError) {
    if reference.kind != candidate.kind || reference.architecture != candidate.architecture {
      throw .invalidCheckpoint(
        path: paths.1,
        reason:
          "is a \(candidate.architecture) (\(candidate.kind.rawValue)) but the reference \(paths.0) is a \(reference.architecture) (\(reference.kind.rawValue)); evaluate compares a model with a compressed copy of itself"
      )
    }
    if reference.vocabularySize != candidate.vocabularySize {
      throw .invalidCheckpoint(
        path: paths.1,
        reason:
          "has a vocabulary of \(candidate.vocabularySize) ids but the reference \(paths.0) has \(reference.vocabularySize); the two must read the same tokens"
      )
    }
  }

  /// Compares `candidate` with `reference` on `samples`.
  public static func evaluate(
    reference: any ForwardModel, candidate: any ForwardModel, paths: (String, String), samples: EvaluationSamples,
    batchTokens: Int = defaultBatchTokens, gates: EvaluationGates = EvaluationGates(),
    progress: ((EvaluationProgress) -> Void)? = nil
  ) throws -> EvaluationReport {
    try checkCompatible(reference: reference, candidate: candidate, paths: paths)
    try samples.requireScoredPositions(for: reference.kind)
    var report = EvaluationReport(
      kind: reference.kind.rawValue,
      reference: EvaluatedModel(
        path: paths.0, architecture: reference.architecture, vocabularySize: reference.vocabularySize),
      candidate: EvaluatedModel(
        path: paths.1, architecture: candidate.architecture, vocabularySize: candidate.vocabularySize),
      data: samples.info)
    var decoder = DecoderAccumulator()
    var referenceEmbeddings: [[Float]] = []
    var candidateEmbeddings: [[Float]] = []
    var tokensDone = 0
    let total = samples.info.tokens
    for range in evaluationBatches(samples.sequences, batchTokens: batchTokens) {
      let batch = TokenBatch(Array(samples.sequences[range]))
      func observer(_ name: String) -> (any ActivationObserver)? {
        progress.map {
          ProgressObserver(
            model: name, tokensDone: tokensDone, batchTokens: batch.tokenCount, tokenCount: total, inner: nil,
            progress: $0)
        }
      }
      let referenceHidden = try reference.finalHiddenStates(batch, observer: observer("reference"))
      let candidateHidden = try candidate.finalHiddenStates(batch, observer: observer("candidate"))
      switch reference.kind {
      case .decoder:
        try compareLogits(
          reference: reference, candidate: candidate, referenceHidden, candidateHidden, batch: batch,
          into: &decoder)
      case .encoder:
        referenceEmbeddings += try reference.sentenceEmbeddings(referenceHidden)
        candidateEmbeddings += try candidate.sentenceEmbeddings(candidateHidden)
      }
      tokensDone += batch.tokenCount
    }
    switch reference.kind {
    case .decoder: report.decoder = decoder.figures()
    case .encoder: report.encoder = EncoderFigures(reference: referenceEmbeddings, candidate: candidateEmbeddings)
    }
    report.gates = gates.check(report)
    return report
  }

  /// Puts the rows of a batch through both heads, a chunk at a time, and scores every position
  /// that has a next token in its sequence.
  static func compareLogits(
    reference: any ForwardModel, candidate: any ForwardModel, _ referenceHidden: HiddenStates,
    _ candidateHidden: HiddenStates, batch: TokenBatch, into accumulator: inout DecoderAccumulator
  ) throws {
    let vocabulary = reference.vocabularySize
    let offsets = batch.offsets
    // The token after each row, -1 for the last row of a sequence.
    var next = [Int](repeating: -1, count: batch.tokenCount)
    for (s, sequence) in batch.sequences.enumerated() {
      for t in 0..<max(0, sequence.count - 1) { next[offsets[s] + t] = Int(sequence[t + 1]) }
    }
    let chunk = max(1, logitsChunkValues / max(1, vocabulary))
    var logP: [Double] = []
    var logQ: [Double] = []
    var start = 0
    while start < batch.tokenCount {
      let rows = start..<min(batch.tokenCount, start + chunk)
      start = rows.upperBound
      guard rows.contains(where: { next[$0] >= 0 }) else { continue }
      // One head at a time: each is let go once its chunk is computed (decoding it again per
      // chunk costs little beside the layers; holding both would cost a second head's memory).
      let p = try reference.logits(referenceHidden, rows: rows)
      reference.releaseOutputWeights()
      let q = try candidate.logits(candidateHidden, rows: rows)
      candidate.releaseOutputWeights()
      p.withUnsafeBufferPointer { p in
        q.withUnsafeBufferPointer { q in
          for (k, row) in rows.enumerated() where next[row] >= 0 {
            let range = (k * vocabulary)..<((k + 1) * vocabulary)
            EvaluationMath.logSoftmax(UnsafeBufferPointer(rebasing: p[range]), into: &logP)
            EvaluationMath.logSoftmax(UnsafeBufferPointer(rebasing: q[range]), into: &logQ)
            accumulator.add(reference: logP, candidate: logQ, next: next[row])
          }
        }
      }
    }
  }
}
