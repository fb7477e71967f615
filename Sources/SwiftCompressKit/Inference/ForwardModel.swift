import CheckpointIO
import Foundation

/// What a model computes on: decoders give next-token logits, encoders sentence embeddings.
public enum ModelKind: String, Sendable, Equatable {
  case decoder
  case encoder
}

/// The token sequences one forward run computes on (no padding: each sequence keeps its own length).
public struct TokenBatch: Sendable, Equatable {
  public var sequences: [[Int32]]
  public init(_ sequences: [[Int32]]) { self.sequences = sequences }
  /// Total number of tokens.
  public var tokenCount: Int { sequences.reduce(0) { $0 + $1.count } }
  /// The first row of each sequence in the concatenated rows, and the total at the end.
  public var offsets: [Int] {
    var result = [0]
    for sequence in sequences { result.append(result.last! + sequence.count) }
    return result
  }
}

/// Rows of activations of a batch: one row of `width` values per token, the sequences' rows one after
/// another (`TokenBatch.offsets`), row-major.
public struct HiddenStates: Sendable, Equatable {
  public var values: [Float]
  public var rows: Int
  public var width: Int
  public var offsets: [Int]
  public init(values: [Float], rows: Int, width: Int, offsets: [Int]) {
    self.values = values
    self.rows = rows
    self.width = width
    self.offsets = offsets
  }
}

/// Watches a forward run: the inputs of the linear modules (what `calibrate` gathers) and the
/// output of each layer (what the tests compare with transformers). Every method has a default
/// that does nothing.
public protocol ActivationObserver: AnyObject {
  /// The input rows X (`rows` tokens x `columns` channels, row-major) that the linear modules
  /// `modules` (full names, e.g. ["model.layers.0.self_attn.q_proj", ...k_proj, ...v_proj]) all
  /// read, once per batch and input; called in the order the forward pass runs them.
  func observe(modules: [String], inputs: UnsafeBufferPointer<Float>, rows: Int, columns: Int)
  /// The hidden states after layer `index` (0-based) of `count`, as transformers'
  /// `output_hidden_states` gives them (index + 1 there; the embeddings' output is index -1).
  /// Always the layer's own output: for a decoder's last layer that is before the final norm,
  /// where transformers' last entry is after it (`finalHiddenStates` returns that one).
  func layerFinished(_ index: Int, of count: Int, hidden: HiddenStates)
}

extension ActivationObserver {
  public func observe(modules: [String], inputs: UnsafeBufferPointer<Float>, rows: Int, columns: Int) {}
  public func layerFinished(_ index: Int, of count: Int, hidden: HiddenStates) {}
}

/// A model the forward pass runs on the CPU, one layer's weights at a time.
public protocol ForwardModel: AnyObject {
  /// Decoder or encoder.
  var kind: ModelKind { get }
  /// config.json's first `architectures` entry ("LlamaForCausalLM").
  var architecture: String { get }
  /// Rows of the output head (decoders) or of the token embedding (encoders).
  var vocabularySize: Int { get }
  /// `max_position_embeddings`, when config.json states it.
  var maxPositions: Int? { get }
  /// The hidden size.
  var hiddenSize: Int { get }
  /// The number of layers.
  var layerCount: Int { get }
  /// The hidden states after the last layer, for decoders after the final norm (what the head
  /// reads); layer by layer over the whole batch, decoding each layer's weights once.
  func finalHiddenStates(_ batch: TokenBatch, observer: (any ActivationObserver)?) throws -> HiddenStates
  /// Decoders: the logits (rows.count x vocabularySize, row-major) of rows `rows` of `hidden`.
  func logits(_ hidden: HiddenStates, rows: Range<Int>) throws -> [Float]
  /// Encoders: one pooled sentence embedding per sequence (sentence-transformers' pooling and
  /// normalisation from the folder's modules.json, mean pooling without one).
  func sentenceEmbeddings(_ hidden: HiddenStates) throws -> [[Float]]
  /// Lets go of what `logits` holds between calls (the head's decoded weight), so that a caller
  /// that has chunked a batch's rows through the head holds no head while the next batch runs the
  /// layers.
  func releaseOutputWeights()
}

extension ForwardModel {
  public func releaseOutputWeights() {}
}

/// A forward model that runs one layer at a time over weights that can be overridden: what the
/// layer-by-layer calibration (`LayerwiseCalibration`) drives.
public protocol LayerByLayerModel: ForwardModel {
  /// The weights it reads (overrides let a calibration run substitute compressed layers).
  var weights: ModelWeights { get }
  /// The linear modules of layer `index`, grouped by the input they read, in the order the
  /// forward pass runs them ([[q, k, v], [o], [gate, up], [down]]).
  func linearModules(ofLayer index: Int) -> [[String]]
  /// The embeddings' output for `batch`: what layer 0 reads.
  func embed(_ batch: TokenBatch) throws -> HiddenStates
  /// Runs layer `index` on `hidden` (the rows of `batch`) in place, showing `observer` the
  /// inputs of its linear modules.
  func runLayer(_ index: Int, _ hidden: inout HiddenStates, batch: TokenBatch, observer: (any ActivationObserver)?)
    throws
  /// What follows the last layer before the head: a decoder's final norm; nothing for encoders.
  func finish(_ hidden: inout HiddenStates) throws
}

extension LayerByLayerModel {
  public func finalHiddenStates(_ batch: TokenBatch, observer: (any ActivationObserver)?) throws -> HiddenStates {
    var hidden = try embed(batch)
    for index in 0..<layerCount {
      try runLayer(index, &hidden, batch: batch, observer: observer)
      observer?.layerFinished(index, of: layerCount, hidden: hidden)
    }
    try finish(&hidden)
    return hidden
  }
}
