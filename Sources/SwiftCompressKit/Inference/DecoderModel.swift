import CheckpointIO
import Foundation
import LinearAlgebra

/// The Llama-family decoders (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
/// Qwen3ForCausalLM) on the CPU, as transformers computes them: token embedding; per layer
/// RMSNorm -> q/k/v (optional biases; Qwen3's per-head q/k RMSNorm) -> RoPE -> causal attention
/// with grouped key-value heads (Mistral's sliding window) -> o_proj, residual, RMSNorm ->
/// down(act(gate) * up), residual; the final RMSNorm; the head (`lm_head`, or the embedding when
/// tied). Weights come from `ModelWeights`, one layer at a time.
final class DecoderModel: LayerByLayerModel {
  let kind = ModelKind.decoder
  let architecture: String
  let vocabularySize: Int
  let maxPositions: Int?
  let hiddenSize: Int
  var layerCount: Int { description.layers.count }

  let weights: ModelWeights
  let description: ModelDescription
  let path: String
  let heads: Int
  let keyValueHeads: Int
  let headDim: Int
  let epsilon: Float
  let activation: Activation
  let inverseFrequencies: [Float]
  let windows: [Int?]
  let embedding: String
  let finalNorm: String
  /// The head's weight name (`lm_head.weight`, or the embedding's when tied).
  let headWeightName: String
  /// The head's weight, read on the first `logits` call (in place when dense F32, else decoded)
  /// and held while callers chunk rows.
  var headWeight: Weight?

  init(weights: ModelWeights, config: JSONValue, description: ModelDescription, architecture: String, path: String)
    throws(SwiftCompressError)
  {
    self.weights = weights
    self.description = description
    self.architecture = architecture
    self.path = path
    let dimensions = description.dimensions
    guard let hidden = dimensions.hiddenSize, let heads = dimensions.attentionHeads, heads > 0 else {
      throw .invalidCheckpoint(path: path, reason: "config.json lacks hidden_size or num_attention_heads")
    }
    guard let embedding = description.embeddings.first(where: { $0.role == .tokens })?.name,
      let head = description.head, let finalNorm = description.norms.first(where: { $0.role == .final })?.name
    else {
      throw .invalidCheckpoint(path: path, reason: "has no token embedding, final norm or output head")
    }
    hiddenSize = hidden
    self.heads = heads
    keyValueHeads = dimensions.keyValueHeads ?? heads
    headDim = dimensions.headDim ?? hidden / heads
    guard keyValueHeads > 0, heads % keyValueHeads == 0, headDim % 2 == 0 else {
      throw .invalidCheckpoint(
        path: path,
        reason:
          "\(heads) attention heads, \(keyValueHeads) key-value heads and head size \(headDim) do not fit together")
    }
    self.embedding = embedding
    self.finalNorm = finalNorm
    headWeightName = (head.tiedTo ?? head.name) + ".weight"
    guard let headShape = weights.shape(of: headWeightName), headShape.count == 2, headShape[1] == hidden else {
      throw .invalidCheckpoint(path: path, reason: "has no output head '\(headWeightName)' of \(hidden) columns")
    }
    vocabularySize = headShape[0]
    maxPositions = ForwardConfiguration.int(config, "max_position_embeddings")
    epsilon = Float(description.normEpsilon ?? 1e-6)
    activation = try ForwardConfiguration.activation(description.activation, path: path)
    inverseFrequencies = try ForwardConfiguration.inverseFrequencies(config, headDim: headDim, path: path)
    windows = ForwardConfiguration.slidingWindows(config, layers: description.layers.count)
    for layer in description.layers where layer.attention == nil || layer.mlp == nil {
      throw .invalidCheckpoint(path: path, reason: "layer '\(layer.name)' lacks its attention or its MLP")
    }
  }

  func linearModules(ofLayer index: Int) -> [[String]] { description.linearInputGroups(ofLayer: index) }

  func embed(_ batch: TokenBatch) throws -> HiddenStates {
    setBLASThreads(1)  // ForwardKernels runs Parallel.jobs single-threaded sgemms at once
    let hidden = try LayerWeights.embed(batch, table: embedding + ".weight", width: hiddenSize, weights: weights)
    weights.release(embedding + ".weight")
    return HiddenStates(values: hidden, rows: batch.tokenCount, width: hiddenSize, offsets: batch.offsets)
  }

  func runLayer(_ index: Int, _ states: inout HiddenStates, batch: TokenBatch, observer: (any ActivationObserver)?)
    throws
  {
    setBLASThreads(1)
    let rows = states.rows
    let offsets = states.offsets
    let width = hiddenSize
    let positions = batch.sequences.flatMap { 0..<$0.count }
    let longest = batch.sequences.map(\.count).max() ?? 0
    let table = ForwardConfiguration.rotaryTable(inverseFrequencies, positions: longest)
    let layer = description.layers[index]
    let loader = LayerWeights(weights)
    let attention = layer.attention!
    let mlp = layer.mlp!
    func norm(_ role: ModelDescription.Norm.Role) -> String? { layer.norms.first { $0.role == role }?.name }
    var hidden = states.values
    states.values = []

    // Attention.
    var x = hidden
    if let name = norm(.preAttention) {
      ForwardKernels.rmsNorm(&x, width: width, weight: try loader.vector(name + ".weight", width), epsilon: epsilon)
    }
    observer?.observe([attention.query, attention.key, attention.value], x, rows: rows, columns: width)
    var q = try loader.linear(attention.query, x, rows: rows, inputs: width, outputs: heads * headDim)
    var k = try loader.linear(attention.key, x, rows: rows, inputs: width, outputs: keyValueHeads * headDim)
    let v = try loader.linear(attention.value, x, rows: rows, inputs: width, outputs: keyValueHeads * headDim)
    if let name = norm(.query) {
      ForwardKernels.rmsNorm(
        &q, width: headDim, weight: try loader.vector(name + ".weight", headDim), epsilon: epsilon)
    }
    if let name = norm(.key) {
      ForwardKernels.rmsNorm(
        &k, width: headDim, weight: try loader.vector(name + ".weight", headDim), epsilon: epsilon)
    }
    ForwardKernels.rotary(&q, heads: heads, headDim: headDim, positions: positions, table: table)
    ForwardKernels.rotary(&k, heads: keyValueHeads, headDim: headDim, positions: positions, table: table)
    var context = [Float](repeating: 0, count: rows * heads * headDim)
    ForwardKernels.attention(
      q: q, k: k, v: v, into: &context, offsets: offsets, heads: heads, kvHeads: keyValueHeads, headDim: headDim,
      causal: true, window: windows[index])
    observer?.observe([attention.output], context, rows: rows, columns: heads * headDim)
    let o = try loader.linear(attention.output, context, rows: rows, inputs: heads * headDim, outputs: width)
    ForwardKernels.add(&hidden, o)

    // MLP.
    x = hidden
    if let name = norm(.preMLP) {
      ForwardKernels.rmsNorm(&x, width: width, weight: try loader.vector(name + ".weight", width), epsilon: epsilon)
    }
    observer?.observe(mlp.inputs, x, rows: rows, columns: width)
    guard let size = weights.shape(of: mlp.inputs[0] + ".weight")?.first else {
      throw SwiftCompressError.invalidModule(name: mlp.inputs[0], reason: "has no weight")
    }
    var gate = try loader.linear(mlp.inputs[0], x, rows: rows, inputs: width, outputs: size)
    let up = try loader.linear(mlp.inputs[1], x, rows: rows, inputs: width, outputs: size)
    ForwardKernels.gated(&gate, up: up, activation)
    observer?.observe([mlp.output], gate, rows: rows, columns: size)
    let down = try loader.linear(mlp.output, gate, rows: rows, inputs: size, outputs: width)
    ForwardKernels.add(&hidden, down)
    loader.releaseAll()
    states.values = hidden
  }

  func finish(_ states: inout HiddenStates) throws {
    let loader = LayerWeights(weights)
    ForwardKernels.rmsNorm(
      &states.values, width: hiddenSize, weight: try loader.vector(finalNorm + ".weight", hiddenSize),
      epsilon: epsilon)
    loader.releaseAll()
  }

  func releaseOutputWeights() {
    // A mapped head's pages go too (a decoded one already let its pages go).
    if headWeight?.isMapped == true { weights.release(headWeightName) }
    headWeight = nil
  }

  func logits(_ hidden: HiddenStates, rows: Range<Int>) throws -> [Float] {
    setBLASThreads(1)  // ForwardKernels runs Parallel.jobs single-threaded sgemms at once
    if headWeight == nil {
      let weight = try weights.weight(headWeightName)
      // A decoded copy is what is held; a view keeps its pages, read again for every chunk.
      if !weight.isMapped { weights.release(headWeightName) }
      headWeight = weight
    }
    let width = hidden.width
    let slice = Array(hidden.values[(rows.lowerBound * width)..<(rows.upperBound * width)])
    return try headWeight!.withUnsafeBufferPointer { (pw) throws(SwiftCompressError) in
      try ForwardKernels.linear(
        slice, rows: rows.count, inputs: width, weight: pw, bias: nil, outputs: vocabularySize,
        module: headWeightName)
    }
  }

  func sentenceEmbeddings(_ hidden: HiddenStates) throws -> [[Float]] {
    throw SwiftCompressError.invalidCheckpoint(
      path: path, reason: "\(architecture) is a decoder: it gives logits, not sentence embeddings")
  }
}

/// One layer's weights as the forward pass reads them: each decoded once through `ModelWeights`,
/// its name remembered so the layer's pages can be released when the layer is done.
final class LayerWeights {
  let weights: ModelWeights
  private(set) var names: [String] = []

  init(_ weights: ModelWeights) { self.weights = weights }

  /// The values of `name`, which must hold `count` values.
  func vector(_ name: String, _ count: Int) throws(SwiftCompressError) -> [Float] {
    names.append(name)
    let values = try weights.floats(name)
    guard values.count == count else {
      throw .invalidTensor(name: name, reason: "has \(values.count) values where the forward pass needs \(count)")
    }
    return values
  }

  /// The output of linear module `module` (its `.weight`, `.bias` when present) on `x`.
  func linear(_ module: String, _ x: [Float], rows: Int, inputs: Int, outputs: Int) throws(SwiftCompressError)
    -> [Float]
  {
    let name = module + ".weight"
    names.append(name)
    let weight = try weights.weight(name)  // Dense F32 is read in place from the mapping.
    guard weight.count == inputs * outputs else {
      throw .invalidTensor(
        name: name, reason: "has \(weight.count) values where the forward pass needs \(inputs * outputs)")
    }
    if let shape = weights.shape(of: name), shape != [outputs, inputs] {
      throw .invalidTensor(
        name: name, reason: "has shape \(shape) where the forward pass needs [\(outputs), \(inputs)]")
    }
    let bias = weights.contains(module + ".bias") ? try vector(module + ".bias", outputs) : nil
    return try weight.withUnsafeBufferPointer { (pw) throws(SwiftCompressError) in
      try ForwardKernels.linear(x, rows: rows, inputs: inputs, weight: pw, bias: bias, outputs: outputs, module: module)
    }
  }

  /// Lets every tensor read go.
  func releaseAll() {
    for name in names { weights.release(name) }
    names = []
  }

  /// The rows of embedding table `table` (vocabulary x `width`) for the batch's tokens.
  static func embed(_ batch: TokenBatch, table name: String, width: Int, weights: ModelWeights)
    throws(SwiftCompressError) -> [Float]
  {
    guard let shape = weights.shape(of: name), shape.count == 2, shape[1] == width else {
      throw .invalidTensor(name: name, reason: "is not an embedding table of \(width) columns")
    }
    // A dense F32 table is read in place: only the pages of the batch's rows become resident.
    let table = try weights.weight(name)
    var rows = [Float](repeating: 0, count: batch.tokenCount * width)
    try table.withUnsafeBufferPointer { (table) throws(SwiftCompressError) in
      var r = 0
      for sequence in batch.sequences {
        for id in sequence {
          guard id >= 0, Int(id) < shape[0] else {
            throw .invalidOption(option: "tokens", reason: "token id \(id) is outside the vocabulary of \(shape[0])")
          }
          let start = Int(id) * width
          for c in 0..<width { rows[r * width + c] = table[start + c] }
          r += 1
        }
      }
    }
    return rows
  }
}

extension ActivationObserver {
  /// `observe(modules:inputs:rows:columns:)` with an array.
  func observe(_ modules: [String], _ inputs: [Float], rows: Int, columns: Int) {
    inputs.withUnsafeBufferPointer { observe(modules: modules, inputs: $0, rows: rows, columns: columns) }
  }
}
