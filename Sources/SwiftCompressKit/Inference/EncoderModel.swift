import CheckpointIO
import Foundation
import LinearAlgebra

/// BERT encoders (BertModel, BertForMaskedLM, and sentence-transformers folders around them) on
/// the CPU, as transformers computes them: word + absolute position + token-type 0 embeddings,
/// LayerNorm; per layer query/key/value with biases -> attention over the whole sequence ->
/// output dense, residual, LayerNorm -> intermediate dense, GELU -> output dense, residual,
/// LayerNorm. The MLM head and the pooler are not computed; sentence embeddings pool the last
/// hidden states as the folder's `modules.json` says.
final class EncoderModel: LayerByLayerModel {
  let kind = ModelKind.encoder
  let architecture: String
  let vocabularySize: Int
  let maxPositions: Int?
  let hiddenSize: Int
  var layerCount: Int { description.layers.count }

  let weights: ModelWeights
  let description: ModelDescription
  let path: String
  let heads: Int
  let headDim: Int
  let epsilon: Float
  let activation: Activation
  let pooling: Pooling

  init(
    weights: ModelWeights, config: JSONValue, description: ModelDescription, architecture: String, path: String,
    pooling: Pooling
  ) throws(SwiftCompressError) {
    self.weights = weights
    self.description = description
    self.architecture = architecture
    self.path = path
    self.pooling = pooling
    let dimensions = description.dimensions
    guard let hidden = dimensions.hiddenSize, let heads = dimensions.attentionHeads, heads > 0, hidden % heads == 0
    else {
      throw .invalidCheckpoint(path: path, reason: "config.json lacks hidden_size or num_attention_heads")
    }
    if let type = config["position_embedding_type"]?.stringValue, type != "absolute" {
      throw .invalidCheckpoint(
        path: path, reason: "position_embedding_type '\(type)' is not supported by the forward pass (only absolute)")
    }
    hiddenSize = hidden
    self.heads = heads
    headDim = hidden / heads
    guard let words = description.embeddings.first(where: { $0.role == .tokens }),
      let shape = weights.shape(of: words.name + ".weight"), shape.count == 2
    else {
      throw .invalidCheckpoint(path: path, reason: "has no word embedding")
    }
    vocabularySize = shape[0]
    maxPositions = ForwardConfiguration.int(config, "max_position_embeddings")
    epsilon = Float(description.normEpsilon ?? 1e-12)
    activation = try ForwardConfiguration.activation(description.activation ?? "gelu", path: path)
    for layer in description.layers where layer.attention == nil || layer.mlp == nil {
      throw .invalidCheckpoint(path: path, reason: "layer '\(layer.name)' lacks its attention or its MLP")
    }
  }

  func linearModules(ofLayer index: Int) -> [[String]] { description.linearInputGroups(ofLayer: index) }

  func embed(_ batch: TokenBatch) throws -> HiddenStates {
    setBLASThreads(1)  // ForwardKernels runs Parallel.jobs single-threaded sgemms at once
    let rows = batch.tokenCount
    let width = hiddenSize
    func table(_ role: ModelDescription.Embedding.Role) -> String? {
      description.embeddings.first { $0.role == role }.map { $0.name + ".weight" }
    }
    var hidden = try LayerWeights.embed(batch, table: table(.tokens)!, width: width, weights: weights)
    let loader = LayerWeights(weights)
    if let positions = table(.positions) {
      let longest = batch.sequences.map(\.count).max() ?? 0
      guard let count = weights.shape(of: positions)?.first, longest <= count else {
        throw SwiftCompressError.invalidOption(
          option: "tokens",
          reason:
            "a sequence of \(longest) tokens is longer than the \(weights.shape(of: positions)?.first ?? 0) positions of \(path)"
        )
      }
      let values = try loader.vector(positions, count * width)
      var r = 0
      for sequence in batch.sequences {
        for p in 0..<sequence.count {
          for j in 0..<width { hidden[r * width + j] += values[p * width + j] }
          r += 1
        }
      }
    }
    if let types = table(.tokenTypes), let count = weights.shape(of: types)?.first {
      // Token type 0 for every token.
      let values = try loader.vector(types, count * width)
      for r in 0..<rows {
        for j in 0..<width { hidden[r * width + j] += values[j] }
      }
    }
    if let norm = description.norms.first(where: { $0.role == .embeddings })?.name {
      try layerNorm(&hidden, norm, loader)
    }
    weights.release(table(.tokens)!)
    loader.releaseAll()
    return HiddenStates(values: hidden, rows: rows, width: width, offsets: batch.offsets)
  }

  func runLayer(_ index: Int, _ states: inout HiddenStates, batch: TokenBatch, observer: (any ActivationObserver)?)
    throws
  {
    setBLASThreads(1)
    let rows = states.rows
    let offsets = states.offsets
    let width = hiddenSize
    var hidden = states.values
    states.values = []
    let layer = description.layers[index]
    let loader = LayerWeights(weights)
    let attention = layer.attention!
    let mlp = layer.mlp!
    func norm(_ role: ModelDescription.Norm.Role) -> String? { layer.norms.first { $0.role == role }?.name }

    observer?.observe([attention.query, attention.key, attention.value], hidden, rows: rows, columns: width)
    let q = try loader.linear(attention.query, hidden, rows: rows, inputs: width, outputs: width)
    let k = try loader.linear(attention.key, hidden, rows: rows, inputs: width, outputs: width)
    let v = try loader.linear(attention.value, hidden, rows: rows, inputs: width, outputs: width)
    var context = [Float](repeating: 0, count: rows * width)
    ForwardKernels.attention(
      q: q, k: k, v: v, into: &context, offsets: offsets, heads: heads, kvHeads: heads, headDim: headDim,
      causal: false, window: nil)
    observer?.observe([attention.output], context, rows: rows, columns: width)
    var attended = try loader.linear(attention.output, context, rows: rows, inputs: width, outputs: width)
    ForwardKernels.add(&attended, hidden)
    if let name = norm(.postAttention) { try layerNorm(&attended, name, loader) }

    observer?.observe(mlp.inputs, attended, rows: rows, columns: width)
    guard let size = weights.shape(of: mlp.inputs[0] + ".weight")?.first else {
      throw SwiftCompressError.invalidModule(name: mlp.inputs[0], reason: "has no weight")
    }
    var intermediate = try loader.linear(mlp.inputs[0], attended, rows: rows, inputs: width, outputs: size)
    ForwardKernels.activate(&intermediate, activation)
    observer?.observe([mlp.output], intermediate, rows: rows, columns: size)
    hidden = try loader.linear(mlp.output, intermediate, rows: rows, inputs: size, outputs: width)
    ForwardKernels.add(&hidden, attended)
    if let name = norm(.postMLP) { try layerNorm(&hidden, name, loader) }
    loader.releaseAll()
    states.values = hidden
  }

  func finish(_ states: inout HiddenStates) throws {}

  private func layerNorm(_ values: inout [Float], _ name: String, _ loader: LayerWeights) throws(SwiftCompressError) {
    ForwardKernels.layerNorm(
      &values, width: hiddenSize, weight: try loader.vector(name + ".weight", hiddenSize),
      bias: try loader.vector(name + ".bias", hiddenSize), epsilon: epsilon)
  }

  func logits(_ hidden: HiddenStates, rows: Range<Int>) throws -> [Float] {
    throw SwiftCompressError.invalidCheckpoint(
      path: path, reason: "\(architecture) is an encoder: it gives sentence embeddings, not logits")
  }

  func sentenceEmbeddings(_ hidden: HiddenStates) throws -> [[Float]] {
    pooling.pool(hidden)
  }
}

/// How sentence-transformers turns an encoder's last hidden states into one embedding per
/// sequence: `1_Pooling/config.json`'s mode, then L2 normalisation when `modules.json` has a
/// `Normalize` module. Every token counts (no padding: each sequence has its own length).
public struct Pooling: Sendable, Equatable {
  public enum Mode: String, Sendable, Equatable, CaseIterable {
    /// The mean of the tokens' rows.
    case mean
    /// The first token's row ([CLS]).
    case cls
    /// The per-channel maximum.
    case max
    /// The sum divided by sqrt(tokens).
    case meanSqrtLength = "mean_sqrt_len_tokens"
    /// The last token's row.
    case lastToken = "lasttoken"
  }

  public var mode: Mode
  public var normalize: Bool

  public init(mode: Mode = .mean, normalize: Bool = false) {
    self.mode = mode
    self.normalize = normalize
  }

  /// One embedding per sequence of `hidden`.
  public func pool(_ hidden: HiddenStates) -> [[Float]] {
    let width = hidden.width
    return (0..<(hidden.offsets.count - 1)).map { s in
      let (start, end) = (hidden.offsets[s], hidden.offsets[s + 1])
      let n = end - start
      var result = [Float](repeating: mode == .max ? -.infinity : 0, count: width)
      guard n > 0 else { return [Float](repeating: 0, count: width) }
      switch mode {
      case .cls:
        result = Array(hidden.values[(start * width)..<((start + 1) * width)])
      case .lastToken:
        result = Array(hidden.values[((end - 1) * width)..<(end * width)])
      case .max:
        for r in start..<end {
          for j in 0..<width { result[j] = Swift.max(result[j], hidden.values[r * width + j]) }
        }
      case .mean, .meanSqrtLength:
        for r in start..<end {
          for j in 0..<width { result[j] += hidden.values[r * width + j] }
        }
        let divisor = mode == .mean ? Float(n) : Float(n).squareRoot()
        for j in 0..<width { result[j] /= divisor }
      }
      if normalize {
        var sum: Float = 0
        for x in result { sum += x * x }
        // torch.nn.functional.normalize: x / max(||x||, 1e-12).
        let norm = Swift.max(sum.squareRoot(), 1e-12)
        for j in 0..<width { result[j] /= norm }
      }
      return result
    }
  }

  /// The pooling of a sentence-transformers folder (`modules.json`), nil when `folder` has none.
  static func read(folder: String) throws(SwiftCompressError) -> Pooling? {
    let modulesPath = folder + "/modules.json"
    guard let data = FileManager.default.contents(atPath: modulesPath) else { return nil }
    guard let modules = (try? JSONParser.parse(Array(data)))?.arrayValue else {
      throw .invalidFile(path: modulesPath, reason: "is not a JSON array of modules")
    }
    var pooling = Pooling()
    for module in modules {
      let type = module["type"]?.stringValue ?? ""
      let kind = type.split(separator: ".").last.map(String.init) ?? type
      switch kind {
      case "Transformer", "Normalize":
        if kind == "Normalize" { pooling.normalize = true }
      case "Pooling":
        let path = folder + "/" + (module["path"]?.stringValue ?? "") + "/config.json"
        guard let data = FileManager.default.contents(atPath: path),
          let config = try? JSONParser.parse(Array(data))
        else {
          throw .invalidFile(path: path, reason: "cannot be read as the Pooling module's config")
        }
        pooling.mode = try mode(config, path: path)
      default:
        throw .invalidFile(
          path: modulesPath,
          reason:
            "module '\(type)' is not supported by the forward pass (supported: Transformer, Pooling, Normalize)")
      }
    }
    return pooling
  }

  /// The mode of a Pooling config: sentence-transformers' `pooling_mode` string, or the older
  /// `pooling_mode_*_tokens` flags (exactly one set).
  static func mode(_ config: JSONValue, path: String) throws(SwiftCompressError) -> Mode {
    if let name = config["pooling_mode"]?.stringValue {
      guard let mode = Mode(rawValue: name == "mean_sqrt_len" ? "mean_sqrt_len_tokens" : name) else {
        throw .invalidFile(
          path: path,
          reason:
            "pooling_mode '\(name)' is not supported (supported: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")))"
        )
      }
      return mode
    }
    let flags: [(String, Mode)] = [
      ("pooling_mode_cls_token", .cls), ("pooling_mode_mean_tokens", .mean), ("pooling_mode_max_tokens", .max),
      ("pooling_mode_mean_sqrt_len_tokens", .meanSqrtLength), ("pooling_mode_lasttoken", .lastToken),
    ]
    let set = flags.filter { config[$0.0]?.boolValue == true }.map(\.1)
    if config["pooling_mode_weightedmean_tokens"]?.boolValue == true || set.count != 1 {
      throw .invalidFile(
        path: path,
        reason: "the forward pass supports exactly one of the cls, mean, max, mean_sqrt_len and lasttoken modes")
    }
    return set[0]
  }
}
