import CheckpointIO
import Foundation
import LinearAlgebra

/// Rotates a Llama-family checkpoint's residual stream and value heads by seeded orthogonal
/// matrices, fused into the weights (QuaRot, arXiv 2404.00456; SpinQuant, arXiv 2405.16406):
/// the model computes the same function, but its weights' outliers are spread over all the
/// channels, so that quantizing them afterwards costs less. docs/rotation.md has the maths.
///
/// With `Q` the `RandomizedHadamard` of the hidden size (seed `seed`) and `V` the one of the
/// head size (seed `seed + 1`), `x Q` being the rotated residual stream:
/// - every RMSNorm's scale is folded into the linears that read it, and set to 1;
/// - embedding `E <- E Q`; q, k, v, gate, up and lm_head `W <- W diag(norm) Q`;
///   o_proj and down_proj `W <- Qᵀ W`, their biases `b <- Qᵀ b`;
/// - per key-value head, v_proj's rows and bias `<- Vᵀ (.)`, o_proj's columns of every
///   query head `<- (.) V` (one `V` for all heads, so grouped heads agree);
/// - a tied head is untied: `lm_head.weight = E diag(norm) Q` is written and config.json says
///   `tie_word_embeddings: false`.
///
/// Each tensor is transformed on its own from itself, the norm it reads (a companion) and the
/// two rotations, which the seed and the sizes in config.json determine: the pass needs the
/// whole model's config but streams tensor by tensor like every other pass.
public struct RotatePass: CompressionPass {
  public struct Configuration: Codable, Sendable, Equatable {
    /// The seed of the rotations (SplitMix64, `SeededGaussian`).
    public var seed: UInt64
    public init(seed: UInt64 = 0) {
      self.seed = seed
    }
  }

  public static let identifier = "rotate"
  public static let summary = "fuse seeded Hadamard rotations into a Llama-family model (QuaRot); same function"
  public static let architectures = [
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
  ]
  /// The key of the output's `__metadata__` record.
  public static let metadataKey = "swiftcompress_rotation"

  public let configuration: Configuration

  /// The model's sizes and the rotations, from `prepared(for:)`.
  struct Model: Sendable {
    var hidden: Int
    var headDim: Int
    var heads: Int
    var kvHeads: Int
    var residual: RandomizedHadamard
    var head: RandomizedHadamard
    /// Whether the checkpoint has no `lm_head.weight` (the embedding is the head).
    var tied: Bool
    var architecture: String
  }
  var model: Model?

  public init(configuration: Configuration = Configuration()) throws(SwiftCompressError) {
    self.configuration = configuration
  }

  /// Every tensor must be seen: a norm or an embedding left out would break the model.
  public var usesDefaultSelection: Bool { false }

  /// The rotated weights are not comparable element by element with the originals.
  public var measuresError: Bool { false }

  public var allTensorsRequirement: String? {
    "a rotation must change every tensor that reads or writes the residual stream; run it on the whole model"
  }

  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> RotatePass {
    let path = checkpoint.path
    guard LoaderContract.hasConfigFile(checkpoint), let config = LoaderContract.config(of: checkpoint) else {
      throw .invalidCheckpoint(
        path: path,
        reason:
          "has no config.json; rotate needs the folder with it (supported: \(Self.architectures.joined(separator: ", ")))"
      )
    }
    let architecture =
      config["architectures"]?.arrayValue?.first?.stringValue ?? config["model_type"]?.stringValue ?? "none"
    guard Self.architectures.contains(architecture) else {
      throw .invalidCheckpoint(
        path: path,
        reason:
          "architecture '\(architecture)' cannot be rotated; rotate supports \(Self.architectures.joined(separator: ", "))"
      )
    }
    if config["quantization_config"] != nil || config[LowRankRecord.configKey] != nil
      || config["sparsity_config"] != nil
    {
      throw .invalidCheckpoint(
        path: path, reason: "is compressed; rotate reads dense weights: run 'swiftcompress decompress' first")
    }
    func int(_ key: String) -> Int? { ForwardConfiguration.int(config, key) }
    guard let hidden = int("hidden_size"), let heads = int("num_attention_heads"), hidden > 0, heads > 0 else {
      throw .invalidCheckpoint(
        path: path, reason: "config.json lacks hidden_size or num_attention_heads; rotate needs both")
    }
    let headDim = int("head_dim") ?? hidden / heads
    let kvHeads = int("num_key_value_heads") ?? heads
    guard headDim > 0, kvHeads > 0, heads % kvHeads == 0 else {
      throw .invalidCheckpoint(
        path: path, reason: "config.json's head_dim \(headDim) or num_key_value_heads \(kvHeads) do not fit")
    }
    var pass = self
    do {
      pass.model = Model(
        hidden: hidden, headDim: headDim, heads: heads, kvHeads: kvHeads,
        residual: try RandomizedHadamard(size: hidden, seed: configuration.seed),
        head: try RandomizedHadamard(size: headDim, seed: configuration.seed &+ 1),
        tied: checkpoint.tensor(named: "lm_head.weight") == nil, architecture: architecture)
    } catch {
      throw .invalidCheckpoint(path: path, reason: "cannot build the rotations: \(error.localizedDescription)")
    }
    return pass
  }

  /// What a tensor is to the rotation, from its name.
  enum Role: Equatable {
    /// The token embedding (and, when tied, the head).
    case embedding
    /// A linear reading the residual stream through `norm`; v_proj also rotates its heads.
    case reader(norm: String, valueHeads: Bool)
    /// A linear writing the residual stream; o_proj also rotates its input heads.
    case writer(outputHeads: Bool)
    /// o_proj's or down_proj's bias.
    case writerBias
    /// v_proj's bias.
    case valueBias
    /// An RMSNorm folded into its readers (written as ones).
    case norm
    /// Unchanged, for the reason given.
    case unchanged(String)
  }

  static func role(of name: String) -> Role? {
    switch name {
    case "model.embed_tokens.weight": return .embedding
    case "model.norm.weight": return .norm
    case "lm_head.weight": return .reader(norm: "model.norm.weight", valueHeads: false)
    case "model.rotary_emb.inv_freq": return .unchanged("RoPE frequencies")
    default: break
    }
    let prefix = "model.layers."
    guard name.hasPrefix(prefix) else { return nil }
    let rest = name.dropFirst(prefix.count)
    guard let dot = rest.firstIndex(of: "."), Int(rest[..<dot]) != nil else { return nil }
    let layer = prefix + rest[..<dot] + "."
    switch String(rest[rest.index(after: dot)...]) {
    case "input_layernorm.weight", "post_attention_layernorm.weight": return .norm
    case "self_attn.q_proj.weight", "self_attn.k_proj.weight":
      return .reader(norm: layer + "input_layernorm.weight", valueHeads: false)
    case "self_attn.v_proj.weight": return .reader(norm: layer + "input_layernorm.weight", valueHeads: true)
    case "mlp.gate_proj.weight", "mlp.up_proj.weight":
      return .reader(norm: layer + "post_attention_layernorm.weight", valueHeads: false)
    case "self_attn.o_proj.weight": return .writer(outputHeads: true)
    case "mlp.down_proj.weight": return .writer(outputHeads: false)
    case "self_attn.o_proj.bias", "mlp.down_proj.bias": return .writerBias
    case "self_attn.v_proj.bias": return .valueBias
    case "self_attn.q_proj.bias", "self_attn.k_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias":
      return .unchanged("a bias of a linear reading the stream: its output is not rotated")
    case "self_attn.q_norm.weight", "self_attn.k_norm.weight":
      return .unchanged("acts per head after q/k_proj, whose outputs are not rotated")
    case "self_attn.rotary_emb.inv_freq": return .unchanged("RoPE frequencies")
    default: return nil
    }
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    guard let model else {
      throw .passBrokePlan(pass: Self.identifier, tensor: tensor.name, reason: "planned before prepared(for:)")
    }
    guard let role = Self.role(of: tensor.name) else {
      throw .invalidTensor(
        name: tensor.name,
        reason:
          "is not part of the \(model.architecture) layout rotate knows (embedding, norms, q/k/v/o, gate/up/down, lm_head); a rotation that left it out would change the model"
      )
    }
    if case .unchanged(let reason) = role { return .keep(reason: reason) }
    guard tensor.dtype.isFloatingPoint, Float32Conversion.encodableDTypes.contains(tensor.dtype) else {
      throw .invalidTensor(
        name: tensor.name, reason: "is \(tensor.dtype.rawValue); rotate reads and writes F32, F16, BF16 or F64 weights")
    }
    let same = PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)
    let (rows, columns) = (tensor.shape.first ?? 0, tensor.shape.dropFirst().reduce(1, *))
    func require(_ condition: Bool, _ expected: String) throws(SwiftCompressError) {
      guard condition else {
        throw .invalidTensor(
          name: tensor.name, reason: "has shape \(tensor.shape) where config.json's sizes give \(expected)")
      }
    }
    let (hidden, d) = (model.hidden, model.headDim)
    switch role {
    case .embedding:
      try require(tensor.shape.count == 2 && columns == hidden, "[vocab, \(hidden)]")
      guard model.tied else { return .transform(outputs: [same], note: "E Q") }
      let head = PlannedTensor(name: "lm_head.weight", dtype: tensor.dtype, shape: tensor.shape)
      return .transform(outputs: [same, head], note: "E Q; untied head lm_head.weight = E diag(model.norm) Q")
    case .reader(let norm, let valueHeads):
      try require(tensor.shape.count == 2 && columns == hidden, "[out, \(hidden)]")
      if valueHeads {
        try require(rows == model.kvHeads * d, "[\(model.kvHeads * d), \(hidden)]")
        return .transform(outputs: [same], note: "V^T (per kv head) W diag(\(norm)) Q")
      }
      return .transform(outputs: [same], note: "W diag(\(norm)) Q")
    case .writer(let outputHeads):
      try require(tensor.shape.count == 2 && rows == hidden, "[\(hidden), in]")
      if outputHeads {
        try require(columns == model.heads * d, "[\(hidden), \(model.heads * d)]")
        return .transform(outputs: [same], note: "Q^T W V (per head)")
      }
      return .transform(outputs: [same], note: "Q^T W")
    case .writerBias:
      try require(tensor.shape == [hidden], "[\(hidden)]")
      return .transform(outputs: [same], note: "Q^T b")
    case .valueBias:
      try require(tensor.shape == [model.kvHeads * d], "[\(model.kvHeads * d)]")
      return .transform(outputs: [same], note: "V^T b (per kv head)")
    case .norm:
      try require(tensor.shape == [hidden], "[\(hidden)]")
      return .transform(outputs: [same], note: "folded into its readers; written as ones")
    case .unchanged(let reason):
      return .keep(reason: reason)
    }
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    let name = input.descriptor.name
    guard let model, let role = Self.role(of: name), let dtype = outputs.first?.dtype else {
      throw .passBrokePlan(pass: Self.identifier, tensor: name, reason: "transformed without a plan")
    }
    let shape = input.descriptor.shape
    let rows = shape.first ?? 0
    let columns = shape.dropFirst().reduce(1, *)
    func encoded(_ values: [Float]) -> OutputData { .owned(DenseCodec.encode(values, as: dtype)) }
    func scale(_ values: inout [Float], byNorm norm: String) throws(SwiftCompressError) {
      guard let companion = input.companion(named: norm) else {
        throw .invalidTensor(name: name, reason: "reads the norm '\(norm)', which the checkpoint lacks")
      }
      let weights = companion.floats()
      guard weights.count == columns else {
        throw .invalidTensor(name: norm, reason: "has \(weights.count) values; \(name) has \(columns) columns")
      }
      for r in 0..<rows { for c in 0..<columns { values[r * columns + c] *= weights[c] } }
    }
    var values = input.floats()
    switch role {
    case .embedding:
      var head = model.tied ? values : []
      model.residual.applyRight(to: &values)
      guard model.tied else { break }
      try scale(&head, byNorm: "model.norm.weight")
      model.residual.applyRight(to: &head)
      return TransformResult(outputs: [encoded(values), encoded(head)], reconstruction: .notApplicable)
    case .reader(let norm, let valueHeads):
      try scale(&values, byNorm: norm)
      model.residual.applyRight(to: &values)
      if valueHeads {
        // Vᵀ W per block of head_dim rows: (Wᵀ V)ᵀ, i.e. V applied to the block's columns.
        let d = model.headDim
        var block = [Float](repeating: 0, count: d * columns)
        for h in 0..<(rows / d) {
          for i in 0..<d { for c in 0..<columns { block[c * d + i] = values[(h * d + i) * columns + c] } }
          model.head.applyRight(to: &block)
          for i in 0..<d { for c in 0..<columns { values[(h * d + i) * columns + c] = block[c * d + i] } }
        }
      }
    case .writer(let outputHeads):
      // Qᵀ W = (Wᵀ Q)ᵀ.
      var transposed = Self.transposed(values, rows: rows, columns: columns)
      model.residual.applyRight(to: &transposed)
      values = Self.transposed(transposed, rows: columns, columns: rows)
      if outputHeads { model.head.applyRight(to: &values) }  // every head's block of columns
    case .writerBias:
      model.residual.applyRight(to: &values)
    case .valueBias:
      model.head.applyRight(to: &values)
    case .norm:
      values = [Float](repeating: 1, count: values.count)
    case .unchanged:
      return TransformResult(outputs: [.input], reconstruction: .exact)
    }
    return TransformResult(outputs: [encoded(values)], reconstruction: .notApplicable)
  }

  static func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
    var out = [Float](repeating: 0, count: values.count)
    for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = values[r * columns + c] } }
    return out
  }

  /// config.json with `tie_word_embeddings: false`: the output always has its own head.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    config.setting("tie_word_embeddings", to: .bool(false)).map { JSONText.pretty($0) }
  }

  /// Every output file records the rotation: method, seed, sizes, and what was rotated.
  public var outputMetadata: [String: String] {
    guard let model else { return [:] }
    return [
      Self.metadataKey:
        "{\"method\":\"randomized-hadamard\",\"seed\":\(configuration.seed),\"hidden_size\":\(model.hidden),"
        + "\"residual\":\"H_\(model.residual.powerOfTwo) x R_\(model.residual.oddFactor) x diag(signs)\","
        + "\"head_dim\":\(model.headDim),\"head_seed\":\(configuration.seed &+ 1),"
        + "\"rotated\":\"residual stream (embedding, q/k/v/gate/up/lm_head inputs, o/down outputs), "
        + "value heads (v_proj outputs, o_proj inputs); norms folded\",\"untied_head\":\(model.tied)}"
    ]
  }
}
