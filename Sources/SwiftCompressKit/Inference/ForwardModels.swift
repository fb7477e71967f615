import CheckpointIO
import Foundation

/// Opens a checkpoint as a `ForwardModel`: the registry of the architectures the CPU forward pass
/// computes.
public enum ForwardModels {
  /// config.json `architectures` the decoder computes.
  public static let decoderArchitectures = [
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
  ]
  /// config.json `architectures` the encoder computes (also inside a sentence-transformers folder).
  public static let encoderArchitectures = ["BertModel", "BertForMaskedLM"]

  /// The supported families, as error messages name them.
  public static var supportedFamilies: String {
    (decoderArchitectures + encoderArchitectures).joined(separator: ", ")
      + " (and sentence-transformers folders of a BERT model)"
  }

  /// What a model's config.json (and a sentence-transformers folder's sentence_bert_config.json)
  /// says, read without opening the weights: enough to check data and gates before a model is
  /// opened. Nil when the folder has no readable config.json.
  public struct ConfigFacts: Sendable, Equatable {
    /// Decoder or encoder by config.json `architectures`; nil for an architecture outside the lists.
    public var kind: ModelKind?
    public var vocabularySize: Int?
    /// config.json `max_position_embeddings`.
    public var maxPositions: Int?
    /// sentence_bert_config.json `max_seq_length` (sentence-transformers truncates to it).
    public var maxSequenceLength: Int?

    /// The most tokens a sample may have: the smaller of `maxPositions` and `maxSequenceLength`.
    public var tokenCap: Int? { [maxPositions, maxSequenceLength].compactMap { $0 }.filter { $0 > 0 }.min() }
  }

  /// The folder of `path` (a folder, or a file in one).
  static func folder(of path: String) -> String {
    var isDirectory: ObjCBool = false
    let folder =
      FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
      ? path : (path as NSString).deletingLastPathComponent
    return folder.isEmpty ? "." : folder
  }

  /// The config facts of the model at `path` (a folder, or a file in one), nil without config.json.
  public static func configFacts(_ path: String) -> ConfigFacts? {
    let folder = folder(of: path)
    guard let data = FileManager.default.contents(atPath: folder + "/config.json"),
      let parsed = try? JSONParser.parse(Array(data)), parsed.members != nil
    else { return nil }
    let config = LoaderGuard.restored(parsed)
    let architecture =
      config["architectures"]?.arrayValue?.first?.stringValue ?? config["model_type"]?.stringValue ?? "none"
    let kind: ModelKind? =
      decoderArchitectures.contains(architecture)
      ? .decoder : encoderArchitectures.contains(architecture) ? .encoder : nil
    var facts = ConfigFacts(
      kind: kind, vocabularySize: ForwardConfiguration.int(config, "vocab_size"),
      maxPositions: ForwardConfiguration.int(config, "max_position_embeddings"))
    if let data = FileManager.default.contents(atPath: folder + "/sentence_bert_config.json"),
      let sentence = try? JSONParser.parse(Array(data))
    {
      facts.maxSequenceLength = ForwardConfiguration.int(sentence, "max_seq_length")
    }
    return facts
  }

  /// The model at `path`: a weight file or a folder (dense or compressed, sharded or not), whose
  /// config.json (beside the file, or in the folder) names the architecture. Throws
  /// `SwiftCompressError.invalidCheckpoint` (exit 65) for an architecture outside
  /// `supportedFamilies`, `CheckpointError` for an unreadable checkpoint.
  public static func open(_ path: String) throws -> any ForwardModel {
    let checkpoint = try Checkpoint.open(path)
    let config = try self.config(of: checkpoint, path: path)
    let architecture =
      config["architectures"]?.arrayValue?.first?.stringValue ?? config["model_type"]?.stringValue ?? "none"
    let decoder = decoderArchitectures.contains(architecture)
    guard decoder || encoderArchitectures.contains(architecture) else {
      throw SwiftCompressError.invalidCheckpoint(
        path: path,
        reason:
          "architecture '\(architecture)' is not supported by the forward pass; supported: \(supportedFamilies)")
    }
    let weights = try ModelWeights(checkpoint)
    if weights.layout == nil, checkpoint.layout == .file,
      config["quantization_config"] != nil || config[LowRankRecord.configKey] != nil
    {
      throw SwiftCompressError.invalidCheckpoint(
        path: path,
        reason:
          "is one weight file of a compressed checkpoint whose layout its folder's config.json describes; pass the folder (\(checkpoint.folder))"
      )
    }
    let names = checkpoint.tensors.map(\.name) + (weights.layout.map { _ in Array(weights.denseNames) } ?? [])
    let adapter = ModelAdapters.adapter(config: config, tensorNames: names)
    let family = decoder ? LlamaAdapter.family : BertAdapter.family
    guard adapter.model.family == family, !adapter.model.layers.isEmpty else {
      throw SwiftCompressError.invalidCheckpoint(
        path: path, reason: "its tensor names do not show the \(architecture) layout")
    }
    if decoder {
      return try DecoderModel(
        weights: weights, config: config, description: adapter.model, architecture: architecture, path: path)
    }
    let folder = checkpoint.folder
    let pooling = try Pooling.read(folder: folder) ?? Pooling()
    return try EncoderModel(
      weights: weights, config: config, description: adapter.model, architecture: architecture, path: path,
      pooling: pooling)
  }

  /// config.json beside the weights, else the records a lone file's metadata carries.
  static func config(of checkpoint: Checkpoint, path: String) throws -> JSONValue {
    let file = checkpoint.folder + "/config.json"
    if let data = FileManager.default.contents(atPath: file) {
      guard let config = try? JSONParser.parse(Array(data)), config.members != nil else {
        throw SwiftCompressError.invalidFile(path: file, reason: "is not a JSON object")
      }
      // A layout no standard loader reads (factors, bitmask, low-rank residual) records the
      // original architecture under the loader guard: the forward pass reads it back.
      return LoaderGuard.restored(config)
    }
    guard let config = LoaderContract.config(of: checkpoint), config["architectures"] != nil else {
      throw SwiftCompressError.invalidCheckpoint(
        path: path, reason: "has no config.json naming its architecture; supported: \(supportedFamilies)")
    }
    return LoaderGuard.restored(config)
  }
}

extension ModelWeights {
  /// The dense names of the compressed weights (for a dense checkpoint, none).
  var denseNames: [String] { primaries.keys.sorted() }
}
