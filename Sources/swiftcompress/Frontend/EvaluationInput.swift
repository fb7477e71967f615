import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit
import Tokenizers

/// The data options of `evaluate`, `calibrate` and `tokenize`.
struct DataOptions: ParsableArguments {
  @Option(
    name: .long,
    help: ArgumentHelp(
      "Samples as text: one per line, or JSON lines with a \"text\" field (tokenized with the model folder's tokenizer.json).",
      valueName: "file"))
  var data: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Samples as token ids instead of --data: JSON lines of id lists, or a .safetensors file with one I32/I64 [samples, length] tensor.",
      valueName: "file"))
  var tokens: String?

  @Option(name: .long, parsing: .unconditional, help: "Draw this many samples (default: all), seeded by --seed.")
  var samples: Int?

  @Option(
    name: .long, parsing: .unconditional,
    help: "Seed of the --samples draw (prune: also --method random's seed). (default: \(SamplingOptions.defaultSeed))")
  var seed: UInt64?

  @Option(
    name: .long, parsing: .unconditional,
    help: "Tokens per sample: longer samples are truncated (with --pack: every sample is this long).")
  var seqLen: Int?

  @Flag(name: .long, help: "Concatenate all samples' tokens and cut them into --seq-len samples.")
  var pack = false

  /// Whether --data or --tokens was given.
  var isGiven: Bool { data != nil || tokens != nil }

  /// For the commands that cannot run without samples (their `validate` calls it).
  func requireGiven() throws {
    if !isGiven { throw ValidationError("give the samples: --data FILE (text) or --tokens FILE (token ids).") }
  }

  func validate() throws {
    if data != nil && tokens != nil {
      throw ValidationError("--data and --tokens are two ways to give the samples: give one.")
    }
    if let samples, samples < 1 { throw ValidationError("--samples must be at least 1, not \(samples).") }
    if let seqLen, seqLen < 1 { throw ValidationError("--seq-len must be at least 1, not \(seqLen).") }
    if pack && seqLen == nil { throw ValidationError("--pack needs --seq-len, the length of the packed samples.") }
  }

  var sampling: SamplingOptions {
    SamplingOptions(samples: samples, seed: seed ?? SamplingOptions.defaultSeed, seqLen: seqLen, pack: pack)
  }

  var source: DataSource { DataSource(data: data, tokens: tokens, sampling: sampling) }

  func load(model: String) throws -> LoadedData { try source.load(model: model) }

  func samples(_ loaded: LoadedData, models: [String]) throws -> EvaluationSamples {
    try source.samples(loaded, models: models)
  }

  static func tokenizerPath(model: String) -> String { DataSource.tokenizerPath(model: model) }
}

/// Where samples come from and how they are drawn: from the command line or a recipe's
/// `evaluate:` block.
struct DataSource {
  var data: String?
  var tokens: String?
  var sampling: SamplingOptions
  var pack: Bool { sampling.pack }
  var seqLen: Int? { sampling.seqLen }

  /// The tokenizer.json that goes with the model at `model` (a folder, or a file in one).
  static func tokenizerPath(model: String) -> String {
    var isDirectory: ObjCBool = false
    let folder =
      FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory) && isDirectory.boolValue
      ? model : (model as NSString).deletingLastPathComponent
    return (folder.isEmpty ? "." : folder) + "/tokenizer.json"
  }

  /// The file's samples as read, before tokenization; a missing file exits 66.
  func raw() throws -> RawSamples {
    let path = tokens ?? data!
    guard FileManager.default.fileExists(atPath: path) else {
      Diagnostics.error("\(tokens != nil ? "--tokens" : "--data") '\(path)': no such file.")
      throw ExitCode(ExitStatus.inputNotFound)
    }
    return try tokens != nil ? EvaluationData.readTokens(path) : EvaluationData.readText(path)
  }

  /// The data file read and, for text, the tokenizer.json of the model at `model` (a folder, or a
  /// file in one): everything that can be checked before a model is opened.
  func load(model: String) throws -> LoadedData {
    let raw = try raw()
    guard tokens == nil else { return LoadedData(raw: raw, tokenizer: nil) }
    let path = Self.tokenizerPath(model: model)
    guard FileManager.default.fileExists(atPath: path) else {
      throw SwiftCompressError.invalidOption(
        option: "--data",
        reason:
          "text samples are tokenized with the model's tokenizer.json, and \(path) does not exist; put the model's tokenizer.json there, or give token ids with --tokens FILE"
      )
    }
    do {
      return LoadedData(raw: raw, tokenizer: try Tokenizer(contentsOf: path))
    } catch {
      throw SwiftCompressError.invalidFile(path: path, reason: error.reason)
    }
  }

  /// The samples computed on the models at `models` (the reference first): tokenized (text
  /// data, truncated by the tokenizer, which keeps its special tokens), drawn and cut to the
  /// smaller of --seq-len and the models' token cap (config.json's max_position_embeddings, a
  /// sentence-transformers folder's max_seq_length; token ids are cut plainly, with a warning),
  /// checked against `vocabularySize` (when nil: the first model's config.json vocab_size, else
  /// the tokenizer's); warnings printed. Reads only the config files, not the weights.
  func samples(_ loaded: LoadedData, models: [String], vocabularySize: Int? = nil) throws -> EvaluationSamples {
    let facts = models.compactMap { ForwardModels.configFacts($0) }
    let cap = facts.compactMap(\.tokenCap).min()
    let fromSentenceConfig = facts.contains { fact in
      fact.maxSequenceLength == cap && cap.map { $0 < fact.maxPositions ?? Int.max } ?? false
    }
    let limitName =
      fromSentenceConfig ? "the sentence-transformers max_seq_length" : "the model's max_position_embeddings"
    let truncation = pack ? nil : [seqLen, cap].compactMap { $0 }.min()
    let tokenizer = loaded.tokenizer
    let vocabulary =
      vocabularySize ?? models.first.flatMap { ForwardModels.configFacts($0)?.vocabularySize }
      ?? tokenizer?.vocabularySize ?? Int(Int32.max)
    let prepared = try EvaluationData.prepare(
      loaded.raw, options: sampling, vocabularySize: vocabulary, maxPositions: cap, limitName: limitName
    ) { text in
      tokenizer?.encode(text, addSpecialTokens: true, maxLength: truncation) ?? []
    }
    for warning in prepared.warnings { Diagnostics.warning(warning) }
    return prepared
  }
}

/// A data file read, with the tokenizer its text needs.
struct LoadedData {
  var raw: RawSamples
  var tokenizer: Tokenizer?
}

/// `--batch-tokens`.
struct BatchOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .unconditional,
    help: "Tokens per forward batch (a longer sample is a batch by itself).")
  var batchTokens: Int = Evaluator.defaultBatchTokens

  @Option(
    name: [.short, .long], parsing: .unconditional,
    help: "Worker threads of the forward pass (default: one per core). The figures do not depend on it.")
  var jobs: Int?

  func validate() throws {
    if batchTokens < 1 { throw ValidationError("--batch-tokens must be at least 1, not \(batchTokens).") }
    if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1, not \(jobs).") }
  }
}

/// The progress line of a forward run: model, layer i/n, tokens and tokens per second; only on a
/// terminal that is not dumb.
final class ForwardProgressLine: @unchecked Sendable {
  private let start = ContinuousClock.now
  private var lastDraw = ContinuousClock.now - .seconds(1)
  private var drawn = false
  /// How many forward runs each batch makes (2 for evaluate: reference and candidate).
  let runsPerBatch: Int

  init(runsPerBatch: Int) { self.runsPerBatch = runsPerBatch }

  /// The callback, nil when progress is not drawn.
  var callback: ((EvaluationProgress) -> Void)? {
    Diagnostics.drawsProgress ? { [self] in update($0) } : nil
  }

  func update(_ p: EvaluationProgress) {
    let now = ContinuousClock.now
    guard now - lastDraw >= .milliseconds(100) else { return }
    lastDraw = now
    let elapsed = Double((now - start).components.seconds) + Double((now - start).components.attoseconds) * 1e-18
    let done = Double(p.tokensDone) + Double(p.batchTokens) * Double(p.layer) / Double(max(1, p.layers))
    let rate = elapsed > 0 ? done / elapsed : 0
    Diagnostics.write(
      "\r\u{1B}[2K\(p.model): layer \(p.layer)/\(p.layers), tokens \(p.tokensDone + p.batchTokens)/\(p.tokenCount), \(Format.fixed(rate, 0)) tokens/s"
    )
    drawn = true
  }

  func finish() {
    if drawn { Diagnostics.write("\r\u{1B}[2K") }
  }
}

/// Refuses (exit 73) an output file whose folder does not exist or cannot be written, or that is
/// a folder: checked before the forward runs.
func checkWritable(_ path: String, option: String) throws {
  let parent = (path as NSString).deletingLastPathComponent
  let folder = parent.isEmpty ? "." : parent
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
    throw CheckpointError.cannotCreateOutput(path: path, reason: "\(option): the folder \(folder) does not exist")
  }
  guard FileManager.default.isWritableFile(atPath: folder) else {
    throw CheckpointError.cannotCreateOutput(path: path, reason: "\(option): the folder \(folder) is not writable")
  }
  if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
    throw CheckpointError.cannotCreateOutput(path: path, reason: "\(option): is a folder")
  }
}

/// Writes `text` to `path` through a temporary file renamed into place.
func writeAtomically(_ text: String, to path: String) throws {
  let directory = (path as NSString).deletingLastPathComponent
  let temporary =
    (directory.isEmpty ? "" : directory + "/") + ".\((path as NSString).lastPathComponent).partial-\(getpid())"
  guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
    throw CheckpointError.cannotCreateOutput(path: path, reason: "cannot write \(temporary)")
  }
  if rename(temporary, path) != 0 {
    unlink(temporary)
    throw CheckpointError.cannotCreateOutput(path: path, reason: String(cString: strerror(errno)))
  }
}

/// The model's own loss on `data` with one weight replaced at a time (`analyze` and
/// `quantize --target-bpw` with --data/--tokens): mean KL divergence against the model itself
/// (decoders) or 1 - mean embedding cosine (encoders).
func measuredModelLoss(model: String, data: DataOptions, batchTokens: Int) throws -> Sensitivity.ModelLoss {
  let loaded = try data.load(model: model)
  let samples = try data.samples(loaded, models: [model])
  let reference = try openModel(model)
  guard let candidate = try openModel(model) as? any LayerByLayerModel else {
    throw SwiftCompressError.invalidCheckpoint(
      path: model, reason: "its forward pass cannot replace single weights; leave out --data and --tokens")
  }
  try samples.check(vocabularySize: reference.vocabularySize)
  try samples.requireScoredPositions(for: reference.kind)
  return .evaluating(
    reference: reference, candidate: candidate, path: model, samples: samples, batchTokens: batchTokens)
}
