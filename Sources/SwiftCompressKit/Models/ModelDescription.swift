import CheckpointIO

/// What a model adapter knows of one checkpoint: plain data read from config.json and the
/// tensor names, never from the weights. Module names are full paths without the tensor
/// suffix ("model.layers.0.self_attn.q_proj" for "model.layers.0.self_attn.q_proj.weight").
///
/// A description lists what the family's layout has (a forward pass would run it in this
/// order); it does not promise every tensor is present: code that reads a module checks.
public struct ModelDescription: Sendable, Equatable {
  /// The adapter family that described it: "llama", "bert" or "generic".
  public let family: String
  /// config.json's `model_type`, when there is one.
  public let modelType: String?
  /// The embedding tables, in the order the forward pass adds them up.
  public let embeddings: [Embedding]
  /// The module that holds the embedding tables together with what they need (BERT's
  /// `embeddings`: its LayerNorm and the `position_ids` buffer); nil when the tables stand
  /// alone (Llama's `model.embed_tokens`). Everything under it is part of the embedding.
  public let embeddingBlock: String?
  /// The layers, in the order the forward pass runs them.
  public let layers: [Layer]
  /// Norms outside the layers: the embeddings' norm (BERT) and the final norm (Llama).
  public let norms: [Norm]
  /// The module that turns the last hidden states into the model's output, if any.
  public let head: OutputHead?
  /// config.json's sizes, as stated there (nil when absent).
  public let dimensions: Dimensions
  /// The MLP activation (`hidden_act`: "silu", "gelu", ...), for a forward pass.
  public let activation: String?
  /// The norms' epsilon (`rms_norm_eps`, `layer_norm_eps`), for a forward pass.
  public let normEpsilon: Double?

  /// What the questions of `ModelAdapter` look up, derived from the fields above: the
  /// embedding modules, every module and norm described (a unit names modules, it does not
  /// describe them: the generic adapter's units leave its answers to the name rules), and
  /// each fused module's set.
  let embeddingModules: Set<String>
  let knownModules: Set<String>
  let fusedByModule: [String: FusedModules]

  public init(
    family: String, modelType: String?, embeddings: [Embedding] = [], embeddingBlock: String? = nil,
    layers: [Layer] = [], norms: [Norm] = [], head: OutputHead? = nil, dimensions: Dimensions = Dimensions(),
    activation: String? = nil, normEpsilon: Double? = nil
  ) {
    self.family = family
    self.modelType = modelType
    self.embeddings = embeddings
    self.embeddingBlock = embeddingBlock
    self.layers = layers
    self.norms = norms
    self.head = head
    self.dimensions = dimensions
    self.activation = activation
    self.normEpsilon = normEpsilon
    embeddingModules = Set(embeddings.map(\.name) + norms.filter { $0.role == .embeddings }.map(\.name))
    var known = embeddingModules.union(norms.map(\.name))
    if let head { known.insert(head.name) }
    var fused: [String: FusedModules] = [:]
    for layer in layers {
      known.formUnion(layer.modules.map(\.name))
      known.formUnion(layer.norms.map(\.name))
      for set in layer.fused {
        for module in set.modules { fused[module] = set }
      }
    }
    knownModules = known
    fusedByModule = fused
  }

  /// Every linear module of the layers, in order.
  public var linearModules: [LinearModule] { layers.flatMap(\.modules) }
}

extension ModelDescription {
  /// One block of the model (a decoder or encoder layer).
  public struct Layer: Sendable, Equatable {
    /// The layer's number in the tensor names ("model.layers.3" is 3); nil when its name
    /// ends in no number.
    public var index: Int?
    /// The layer's name prefix: "model.layers.0", "encoder.layer.0".
    public var name: String
    /// The linear modules in the order the forward pass runs them, each with what it reads.
    public var modules: [LinearModule]
    /// The layer's norms, in forward order.
    public var norms: [Norm]
    /// The attention heads, the unit structured pruning removes across query, key, value and
    /// output projections.
    public var attention: AttentionHeads?
    /// The MLP neurons, the unit structured pruning removes across the MLP's projections.
    public var mlp: MLPNeurons?
    /// Modules that loaders fuse into one layer (and that share one NVFP4 global scale).
    public var fused: [FusedModules]

    public init(
      index: Int?, name: String, modules: [LinearModule] = [], norms: [Norm] = [], attention: AttentionHeads? = nil,
      mlp: MLPNeurons? = nil, fused: [FusedModules] = []
    ) {
      self.index = index
      self.name = name
      self.modules = modules
      self.norms = norms
      self.attention = attention
      self.mlp = mlp
      self.fused = fused
    }

    /// Modules that read the same input (q/k/v from one norm, gate/up from another), in
    /// forward order: where one measurement of the input serves several weights.
    public var sharedInputs: [[String]] {
      var groups: [(input: ModuleInput, modules: [String])] = []
      for module in modules {
        if let i = groups.firstIndex(where: { $0.input == module.input }) {
          groups[i].modules.append(module.name)
        } else {
          groups.append((module.input, [module.name]))
        }
      }
      return groups.map(\.modules).filter { $0.count > 1 }
    }
  }

  /// A linear module (`y = x W^T (+ b)`) and what its input `x` is.
  public struct LinearModule: Sendable, Equatable {
    public var name: String
    public var input: ModuleInput

    public init(_ name: String, reads input: ModuleInput) {
      self.name = name
      self.input = input
    }
  }

  /// What a linear module reads.
  public enum ModuleInput: Sendable, Equatable {
    /// The output of the norm of that name: Llama's q/k/v read `input_layernorm`, gate/up
    /// `post_attention_layernorm`; BERT's query/key/value read the previous layer's
    /// `output.LayerNorm` (the first layer the embeddings' `LayerNorm`), its
    /// `intermediate.dense` the `attention.output.LayerNorm`.
    case norm(String)
    /// The heads of the attention block of that name, joined (softmax(q k^T / sqrt(d)) v per
    /// head): what Llama's o_proj and BERT's `attention.output.dense` read.
    case attention(String)
    /// `activation(gate) * up`: what a gated MLP's down_proj reads.
    case gated(gate: String, up: String)
    /// `activation(module)`: what BERT's `output.dense` reads.
    case activated(String)
  }

  /// A norm and where it sits.
  public struct Norm: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable {
      /// After the embeddings are added up (BERT's `embeddings.LayerNorm`).
      case embeddings
      /// Before attention, on the residual stream (Llama's `input_layernorm`).
      case preAttention
      /// On each query or key head before the rotary embedding (Qwen3's `q_norm`, `k_norm`).
      case query, key
      /// Before the MLP (Llama's `post_attention_layernorm`, despite its name).
      case preMLP
      /// After attention's residual add (BERT's `attention.output.LayerNorm`).
      case postAttention
      /// After the MLP's residual add (BERT's `output.LayerNorm`), the layer's output.
      case postMLP
      /// After the last layer (Llama's `model.norm`).
      case final
    }

    public enum Kind: String, Sendable, Equatable {
      /// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight`.
      case rms
      /// LayerNorm: `(x - mean) / sqrt(var + eps) * weight + bias`.
      case layer
    }

    public var name: String
    public var role: Role
    public var kind: Kind

    public init(_ name: String, role: Role, kind: Kind) {
      self.name = name
      self.role = role
      self.kind = kind
    }
  }

  /// An embedding table.
  public struct Embedding: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable {
      case tokens, positions, tokenTypes
    }

    public var name: String
    public var role: Role

    public init(_ name: String, role: Role) {
      self.name = name
      self.role = role
    }
  }

  /// The module that produces the model's output from the last hidden states.
  public struct OutputHead: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
      /// Token logits (Llama's `lm_head`).
      case logits
      /// BERT's pooler: `tanh(dense(first token))`.
      case pooler
    }

    public var name: String
    public var kind: Kind
    /// The embedding table whose weight the head uses (`tie_word_embeddings`); the head then
    /// has no weight of its own in the checkpoint.
    public var tiedTo: String?
    public var input: ModuleInput

    public init(_ name: String, kind: Kind, tiedTo: String? = nil, reads input: ModuleInput) {
      self.name = name
      self.kind = kind
      self.tiedTo = tiedTo
      self.input = input
    }
  }

  /// A layer's attention heads as structured pruning couples them: each head's rows of the
  /// query, key and value projections and its columns of the output projection. With grouped
  /// key-value heads, one key-value head serves `heads / keyValueHeads` query heads and the
  /// unit is that group.
  public struct AttentionHeads: Sendable, Equatable {
    /// The block: "model.layers.0.self_attn", "encoder.layer.0.attention".
    public var name: String
    public var query: String
    public var key: String
    public var value: String
    public var output: String
    /// Whether config.json states the key-value heads and the head size on their own
    /// (Llama's `num_key_value_heads`, `head_dim`), so that a model with fewer heads can be
    /// described; BERT has one key and value per head and derives the head size from
    /// `hidden_size / num_attention_heads`, so its heads can be zeroed but not removed.
    public var groupedKeyValue: Bool
    /// `num_attention_heads`.
    public var heads: Int?
    /// `num_key_value_heads` (`heads` when config.json does not say, and for BERT).
    public var keyValueHeads: Int?
    /// `head_dim`, or `hidden_size / num_attention_heads`.
    public var headDim: Int?

    public init(
      name: String, query: String, key: String, value: String, output: String, groupedKeyValue: Bool, heads: Int?,
      keyValueHeads: Int?, headDim: Int?
    ) {
      self.name = name
      self.query = query
      self.key = key
      self.value = value
      self.output = output
      self.groupedKeyValue = groupedKeyValue
      self.heads = heads
      self.keyValueHeads = keyValueHeads
      self.headDim = headDim
    }
  }

  /// A layer's MLP neurons: each neuron is a row of every `inputs` projection (and of its
  /// bias) and a column of the `output` projection.
  public struct MLPNeurons: Sendable, Equatable {
    /// The block: "model.layers.0.mlp", "encoder.layer.0.intermediate".
    public var name: String
    /// gate_proj and up_proj (a gated MLP), or BERT's `intermediate.dense`.
    public var inputs: [String]
    /// down_proj, or BERT's `output.dense`.
    public var output: String
    /// `intermediate_size`.
    public var size: Int?

    public init(name: String, inputs: [String], output: String, size: Int?) {
      self.name = name
      self.inputs = inputs
      self.output = output
      self.size = size
    }

    /// Whether the MLP is gated (`down(act(gate) * up)`) rather than `output(act(input))`.
    public var gated: Bool { inputs.count > 1 }
  }

  /// Modules that loaders fuse into one layer: vLLM loads q/k/v as one `qkv_proj` and
  /// gate/up as one `gate_up_proj`, and refuses the parts stored differently. NVFP4 gives
  /// the parts one global scale, as llm-compressor does, so the fused layer has one.
  public struct FusedModules: Sendable, Equatable {
    public enum Kind: Int, Sendable, Equatable, Comparable, CaseIterable {
      case attention, mlp

      public static func < (a: Kind, b: Kind) -> Bool { a.rawValue < b.rawValue }
    }

    /// The set's name: "model.layers.0.self_attn.qkv", "model.layers.0.mlp.gate_up".
    public var name: String
    public var kind: Kind
    /// The parts, in the fused layer's order.
    public var modules: [String]

    public init(name: String, kind: Kind, modules: [String]) {
      self.name = name
      self.kind = kind
      self.modules = modules
    }
  }

  /// config.json's sizes, as stated there (nil when absent or not a plain integer).
  public struct Dimensions: Sendable, Equatable {
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var attentionHeads: Int?
    public var keyValueHeads: Int?
    public var headDim: Int?
    public var layerCount: Int?
    public var vocabularySize: Int?

    public init(
      hiddenSize: Int? = nil, intermediateSize: Int? = nil, attentionHeads: Int? = nil, keyValueHeads: Int? = nil,
      headDim: Int? = nil, layerCount: Int? = nil, vocabularySize: Int? = nil
    ) {
      self.hiddenSize = hiddenSize
      self.intermediateSize = intermediateSize
      self.attentionHeads = attentionHeads
      self.keyValueHeads = keyValueHeads
      self.headDim = headDim
      self.layerCount = layerCount
      self.vocabularySize = vocabularySize
    }

    /// The sizes config.json states under transformers' usual keys.
    public init(config: JSONValue?) {
      func int(_ key: String) -> Int? { config?[key]?.uint64Value.flatMap { Int(exactly: $0) } }
      self.init(
        hiddenSize: int("hidden_size"), intermediateSize: int("intermediate_size"),
        attentionHeads: int("num_attention_heads"), keyValueHeads: int("num_key_value_heads"), headDim: int("head_dim"),
        layerCount: int("num_hidden_layers"), vocabularySize: int("vocab_size"))
    }

    /// `head_dim`, or `hidden_size / num_attention_heads`.
    var derivedHeadDim: Int? {
      if let headDim { return headDim }
      guard let hiddenSize, let attentionHeads, attentionHeads > 0 else { return nil }
      return hiddenSize / attentionHeads
    }
  }
}

extension ModelDescription {
  /// The linear modules of layer `index` grouped by the input they read, in the order a
  /// forward pass runs them: [[q, k, v], [o], MLP inputs, [MLP output]].
  func linearInputGroups(ofLayer index: Int) -> [[String]] {
    let layer = layers[index]
    guard let attention = layer.attention, let mlp = layer.mlp else { return [] }
    return [[attention.query, attention.key, attention.value], [attention.output], mlp.inputs, [mlp.output]]
  }
}
