import CheckpointIO

/// BERT-style encoders (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA): `embeddings` adds
/// word, position and token-type tables and applies its `LayerNorm`; then per layer
/// `attention.self` query/key/value (one key and value per head) -> `attention.output.dense`,
/// residual, `attention.output.LayerNorm` -> `intermediate.dense` -> `output.dense` of
/// `act(intermediate)`, residual, `output.LayerNorm` (LayerNorm after each residual add);
/// `pooler.dense` (tanh of the first token) when present. Sentence-transformers folders
/// keep these names; their pooling has no weights.
public struct BertAdapter: ModelAdapter {
  public static let family = "bert"
  public static let modelTypes: Set<String> = ["bert", "roberta", "xlm-roberta", "camembert", "electra"]
  public static let classPrefixes = ["Bert", "Roberta", "XLMRoberta", "Camembert", "Electra"]

  public let model: ModelDescription

  public static func claims(_ config: JSONValue) -> Bool {
    ModelAdapters.config(config, hasType: modelTypes, orClassOf: classPrefixes)
  }

  public init?(config: JSONValue?, tensorNames: [String]) {
    let modules = ModelAdapters.modules(of: tensorNames)
    let dimensions = ModelDescription.Dimensions(config: config)
    let layers = Self.layers(modules, dimensions)
    guard let first = layers.first, let last = layers.last else { return nil }
    let base = Self.base(ofStack: ModelAdapters.split(first.name).stack)
    let block = ModelAdapters.join(base, "embeddings")
    let hasBlock = modules.contains { $0 == block || $0.hasPrefix(block + ".") }
    let tables: [(String, ModelDescription.Embedding.Role)] = [
      ("word_embeddings", .tokens), ("position_embeddings", .positions), ("token_type_embeddings", .tokenTypes),
    ]
    let embeddings = tables.filter { modules.contains(block + "." + $0.0) }.map {
      ModelDescription.Embedding(block + "." + $0.0, role: $0.1)
    }
    let norms =
      modules.contains(block + ".LayerNorm")
      ? [ModelDescription.Norm(block + ".LayerNorm", role: .embeddings, kind: .layer)] : []
    let pooler = ModelAdapters.join(base, "pooler.dense")
    model = ModelDescription(
      family: Self.family, modelType: config?["model_type"]?.stringValue, embeddings: embeddings,
      embeddingBlock: hasBlock ? block : nil, layers: layers, norms: norms,
      head: modules.contains(pooler)
        ? ModelDescription.OutputHead(pooler, kind: .pooler, reads: .norm(last.name + ".output.LayerNorm")) : nil,
      dimensions: dimensions, activation: config?["hidden_act"]?.stringValue ?? "gelu",
      normEpsilon: config?["layer_norm_eps"]?.doubleValue ?? 1e-12)
  }

  /// "encoder.layer" -> "", "bert.encoder.layer" -> "bert": where the embeddings and the
  /// pooler are.
  static func base(ofStack stack: String) -> String {
    ModelAdapters.module(ofTensor: ModelAdapters.module(ofTensor: stack))
  }

  /// The encoder layers the module names show: every prefix `P` of a
  /// `P.attention.self.query` or a `P.intermediate.dense`, in order.
  static func layers(_ modules: Set<String>, _ dimensions: ModelDescription.Dimensions) -> [ModelDescription.Layer] {
    let prefixes = ModelAdapters.layerPrefixes(modules, suffixes: [".attention.self.query", ".intermediate.dense"])
    return prefixes.enumerated().map { i, p in
      var layer = ModelDescription.Layer(index: ModelAdapters.split(p).index, name: p)
      // A layer reads the previous layer's output norm; the first, the embeddings' norm.
      let stack = ModelAdapters.split(p).stack
      let input =
        i > 0 && ModelAdapters.split(prefixes[i - 1]).stack == stack
        ? prefixes[i - 1] + ".output.LayerNorm" : ModelAdapters.join(base(ofStack: stack), "embeddings.LayerNorm")
      let attention = p + ".attention"
      let attentionNorm = attention + ".output.LayerNorm"
      if modules.contains(attention + ".self.query") {
        let (q, k, v) = (attention + ".self.query", attention + ".self.key", attention + ".self.value")
        let o = attention + ".output.dense"
        layer.modules += [q, k, v].map { .init($0, reads: .norm(input)) } + [.init(o, reads: .attention(attention))]
        layer.norms.append(.init(attentionNorm, role: .postAttention, kind: .layer))
        layer.attention = .init(
          name: attention, query: q, key: k, value: v, output: o, groupedKeyValue: false,
          heads: dimensions.attentionHeads, keyValueHeads: dimensions.attentionHeads,
          headDim: dimensions.derivedHeadDim)
      }
      let intermediate = p + ".intermediate.dense"
      if modules.contains(intermediate) {
        let output = p + ".output.dense"
        layer.modules += [
          .init(intermediate, reads: .norm(attentionNorm)), .init(output, reads: .activated(intermediate)),
        ]
        layer.norms.append(.init(p + ".output.LayerNorm", role: .postMLP, kind: .layer))
        layer.mlp = .init(
          name: p + ".intermediate", inputs: [intermediate], output: output, size: dimensions.intermediateSize)
      }
      return layer
    }
  }
}
