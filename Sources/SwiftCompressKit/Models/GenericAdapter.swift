import CheckpointIO

/// The adapter for a model config.json does not name as a known family (or a checkpoint
/// without config.json): it knows what names alone tell, the rules swiftcompress has
/// always applied to any model.
/// - A 2-D floating-point `.weight` is a linear layer's weight unless its name looks like an
///   embedding's (`looksLikeEmbedding`).
/// - q_proj/k_proj/v_proj and gate_proj/up_proj with a common prefix are fused sets
///   (`fusedModulesByName`).
/// - The coupled units that Llama-style names (`*.self_attn.q_proj`, `*.mlp.gate_proj`) and
///   BERT-style names (`*.attention.self.query`, `*.intermediate.dense`) show, wherever they
///   are, with config.json's head counts: its layers hold only those units. What the
///   modules read, the norms, the head, the activation and the epsilon are not known.
public struct GenericAdapter: ModelAdapter {
  public static let family = "generic"
  public let model: ModelDescription

  public static func claims(_ config: JSONValue) -> Bool { false }

  /// The name rules with no checkpoint.
  public init() {
    model = ModelDescription(family: Self.family, modelType: nil)
  }

  public init(config: JSONValue?, tensorNames: [String]) {
    let modules = ModelAdapters.modules(of: tensorNames)
    let dimensions = ModelDescription.Dimensions(config: config)
    let layers = (LlamaAdapter.layers(modules, dimensions) + BertAdapter.layers(modules, dimensions)).map {
      ModelDescription.Layer(index: $0.index, name: $0.name, attention: $0.attention, mlp: $0.mlp)
    }
    model = ModelDescription(
      family: Self.family, modelType: config?["model_type"]?.stringValue, layers: layers, dimensions: dimensions)
  }

  /// Whether tensor `name` looks like an embedding table's by its name: a module path
  /// component containing "embed" (embed_tokens, word_embeddings, position_embeddings, ...)
  /// or GPT-2's `wte` / `wpe`.
  public static func looksLikeEmbedding(_ name: String) -> Bool {
    let components = name.split(separator: ".").dropLast()
    return components.contains { $0.lowercased().contains("embed") || $0 == "wte" || $0 == "wpe" }
  }

  /// The fused set of `module` by its name: `P.q_proj`, `P.k_proj`, `P.v_proj` are the set
  /// `P.qkv`; `P.gate_proj`, `P.up_proj` the set `P.gate_up` (llm-compressor's rule).
  public static func fusedModulesByName(of module: String) -> ModelDescription.FusedModules? {
    let sets: [([String], String, ModelDescription.FusedModules.Kind)] = [
      (["q_proj", "k_proj", "v_proj"], "qkv", .attention), (["gate_proj", "up_proj"], "gate_up", .mlp),
    ]
    for (parts, name, kind) in sets {
      for part in parts where module.hasSuffix("." + part) {
        let stem = String(module.dropLast(part.count))
        return ModelDescription.FusedModules(name: stem + name, kind: kind, modules: parts.map { stem + $0 })
      }
    }
    return nil
  }
}
