import CheckpointIO

/// Llama-style decoders (Llama, Mistral, Qwen2, Qwen3): `model.embed_tokens`, then per
/// layer `input_layernorm` -> self_attn q/k/v_proj (grouped key-value heads; Qwen3 adds
/// `q_norm`/`k_norm` per head) -> o_proj, residual, `post_attention_layernorm` ->
/// mlp gate/up_proj -> down_proj of `act(gate) * up`, residual; `model.norm`, `lm_head`
/// (tied to the embedding with `tie_word_embeddings`). RMSNorm everywhere.
public struct LlamaAdapter: ModelAdapter {
  public static let family = "llama"
  /// config.json `model_type`s of this layout.
  public static let modelTypes: Set<String> = ["llama", "mistral", "qwen2", "qwen3"]
  /// Their transformers class names' stems ("LlamaForCausalLM", "Qwen2Model", ...).
  public static let classPrefixes = ["Llama", "Mistral", "Qwen2", "Qwen3"]

  public let model: ModelDescription

  public static func claims(_ config: JSONValue) -> Bool {
    ModelAdapters.config(config, hasType: modelTypes, orClassOf: classPrefixes)
  }

  public init?(config: JSONValue?, tensorNames: [String]) {
    let modules = ModelAdapters.modules(of: tensorNames)
    let dimensions = ModelDescription.Dimensions(config: config)
    let layers = Self.layers(modules, dimensions)
    guard let first = layers.first else { return nil }
    // "model.layers" -> "model": where the embedding and the final norm are.
    let stack = ModelAdapters.split(first.name).stack
    let base = ModelAdapters.module(ofTensor: stack)
    let embed = ModelAdapters.join(base, "embed_tokens")
    let embeddings = modules.contains(embed) ? [ModelDescription.Embedding(embed, role: .tokens)] : []
    let finalNorm = ModelDescription.Norm(ModelAdapters.join(base, "norm"), role: .final, kind: .rms)
    // lm_head sits beside the base model ("model" -> "lm_head").
    let headName = ModelAdapters.join(ModelAdapters.module(ofTensor: base), "lm_head")
    let tied = config?["tie_word_embeddings"]?.boolValue ?? false
    var head: ModelDescription.OutputHead?
    if modules.contains(headName) || (tied && !embeddings.isEmpty) {
      head = ModelDescription.OutputHead(
        headName, kind: .logits, tiedTo: tied ? embed : nil, reads: .norm(finalNorm.name))
    }
    model = ModelDescription(
      family: Self.family, modelType: config?["model_type"]?.stringValue, embeddings: embeddings, layers: layers,
      norms: [finalNorm], head: head, dimensions: dimensions,
      activation: config?["hidden_act"]?.stringValue ?? "silu",
      normEpsilon: config?["rms_norm_eps"]?.doubleValue ?? 1e-6)
  }

  /// The decoder layers the module names show: every prefix `P` of a `P.self_attn.q_proj`
  /// or a `P.mlp.gate_proj`, in order.
  static func layers(_ modules: Set<String>, _ dimensions: ModelDescription.Dimensions) -> [ModelDescription.Layer] {
    ModelAdapters.layerPrefixes(modules, suffixes: [".self_attn.q_proj", ".mlp.gate_proj"]).map { p in
      var layer = ModelDescription.Layer(index: ModelAdapters.split(p).index, name: p)
      let attention = p + ".self_attn"
      if modules.contains(attention + ".q_proj") {
        let norm = p + ".input_layernorm"
        let (q, k, v, o) = (attention + ".q_proj", attention + ".k_proj", attention + ".v_proj", attention + ".o_proj")
        layer.norms.append(.init(norm, role: .preAttention, kind: .rms))
        for (name, role) in [("q_norm", ModelDescription.Norm.Role.query), ("k_norm", .key)]
        where modules.contains(attention + "." + name) {
          layer.norms.append(.init(attention + "." + name, role: role, kind: .rms))
        }
        layer.modules += [q, k, v].map { .init($0, reads: .norm(norm)) } + [.init(o, reads: .attention(attention))]
        layer.attention = .init(
          name: attention, query: q, key: k, value: v, output: o, groupedKeyValue: true,
          heads: dimensions.attentionHeads, keyValueHeads: dimensions.keyValueHeads ?? dimensions.attentionHeads,
          headDim: dimensions.derivedHeadDim)
        layer.fused.append(.init(name: attention + ".qkv", kind: .attention, modules: [q, k, v]))
      }
      let mlp = p + ".mlp"
      if modules.contains(mlp + ".gate_proj") {
        let norm = p + ".post_attention_layernorm"
        let (gate, up, down) = (mlp + ".gate_proj", mlp + ".up_proj", mlp + ".down_proj")
        layer.norms.append(.init(norm, role: .preMLP, kind: .rms))
        layer.modules += [
          .init(gate, reads: .norm(norm)), .init(up, reads: .norm(norm)),
          .init(down, reads: .gated(gate: gate, up: up)),
        ]
        layer.mlp = .init(name: mlp, inputs: [gate, up], output: down, size: dimensions.intermediateSize)
        layer.fused.append(.init(name: mlp + ".gate_up", kind: .mlp, modules: [gate, up]))
      }
      return layer
    }
  }
}
