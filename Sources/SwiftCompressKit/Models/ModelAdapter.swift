import CheckpointIO

/// One architecture family's knowledge of a model: from config.json and the tensor names,
/// its layers in order, each layer's linear modules and what they read, the units
/// structured pruning couples, the norms, the embeddings and the output head
/// (`ModelDescription`). Code that needs the structure asks the adapter instead of
/// matching names itself; `ModelAdapters.adapter(for:)` picks one for a checkpoint.
///
/// Where a name is not part of the description (a module the family does not know), the
/// questions answer with the generic adapter's name rules, so an adapter never answers
/// differently from those rules on names it does not know.
public protocol ModelAdapter: Sendable {
  /// The family's name: "llama", "bert", "generic".
  static var family: String { get }
  /// Whether config.json says the model is of this family (`model_type`, `architectures`).
  static func claims(_ config: JSONValue) -> Bool
  /// Describes the checkpoint whose config.json is `config` (nil without one) and whose
  /// tensors are named `tensorNames`; nil when the names do not show this family's layout.
  init?(config: JSONValue?, tensorNames: [String])
  /// The model, as data.
  var model: ModelDescription { get }
}

extension ModelAdapter {
  /// Whether tensor `name` belongs to an embedding: a table, or anything in the block that
  /// holds them (BERT's `embeddings.LayerNorm`, `embeddings.position_ids`). The default
  /// selection and the `Linear` target leave embeddings alone.
  public func isEmbedding(_ name: String) -> Bool {
    let module = ModelAdapters.module(ofTensor: name)
    if model.embeddingModules.contains(module) { return true }
    if let block = model.embeddingBlock, module == block || module.hasPrefix(block + ".") { return true }
    if model.knownModules.contains(module) { return false }
    return GenericAdapter.looksLikeEmbedding(name)
  }

  /// Whether `tensor` is the weight of a linear layer, as a recipe's `Linear` target
  /// means: a 2-D floating-point `.weight` that is not an embedding.
  public func isLinearWeight(_ tensor: TensorDescriptor) -> Bool {
    tensor.shape.count == 2 && tensor.name.hasSuffix(".weight") && tensor.dtype.isFloatingPoint
      && !isEmbedding(tensor.name)
  }

  /// The modules fused with `module` into one layer by loaders (q/k/v, gate/up), or nil.
  public func fusedModules(of module: String) -> ModelDescription.FusedModules? {
    if let set = model.fusedByModule[module] { return set }
    if model.knownModules.contains(module) { return nil }
    return GenericAdapter.fusedModulesByName(of: module)
  }

  /// The group whose NVFP4 global scale `module` shares: its fused set's name
  /// ("model.layers.0.self_attn.qkv", "model.layers.0.mlp.gate_up"), or the module itself.
  /// BERT's query/key/value read one input, but llm-compressor shares the scale only over
  /// q_proj/k_proj/v_proj and gate_proj/up_proj: each keeps its own.
  public func scaleSharingGroup(ofModule module: String) -> String {
    fusedModules(of: module)?.name ?? module
  }
}

/// The registry of model adapters.
public enum ModelAdapters {
  /// The families known by config.json, in the order they are tried.
  public static let families: [any ModelAdapter.Type] = [LlamaAdapter.self, BertAdapter.self]

  /// The generic adapter with no checkpoint: the name rules alone.
  public static let generic = GenericAdapter()

  /// The adapter of `checkpoint`, from its config (`LoaderContract.config(of:)`) and its
  /// tensor names.
  public static func adapter(for checkpoint: Checkpoint) -> any ModelAdapter {
    adapter(config: LoaderContract.config(of: checkpoint), tensorNames: checkpoint.tensors.map(\.name))
  }

  /// The family config.json names (`model_type` or `architectures`) when the tensor names
  /// show its layout; otherwise the generic adapter, which goes by the names alone.
  public static func adapter(config: JSONValue?, tensorNames: [String]) -> any ModelAdapter {
    if let config {
      for family in families where family.claims(config) {
        if let adapter = family.init(config: config, tensorNames: tensorNames) { return adapter }
      }
    }
    return GenericAdapter(config: config, tensorNames: tensorNames)
  }

  /// The module a tensor belongs to: its name without the last component.
  static func module(ofTensor name: String) -> String {
    guard let dot = name.lastIndex(of: ".") else { return "" }
    return String(name[..<dot])
  }

  /// The modules of `tensorNames`, each once.
  static func modules(of tensorNames: [String]) -> Set<String> {
    Set(tensorNames.map { module(ofTensor: $0) })
  }

  /// Whether `config`'s `model_type` is one of `types`, or one of its `architectures` is a
  /// class of a family in `classPrefixes` ("Llama" + "ForCausalLM", "Model", "For...").
  static func config(_ config: JSONValue, hasType types: Set<String>, orClassOf classPrefixes: [String]) -> Bool {
    if let type = config["model_type"]?.stringValue, types.contains(type) { return true }
    let classes = (config["architectures"]?.arrayValue ?? []).compactMap(\.stringValue)
    return classes.contains { name in
      classPrefixes.contains { prefix in
        guard name.hasPrefix(prefix) else { return false }
        let rest = name.dropFirst(prefix.count)
        return rest == "Model" || rest == "LMHeadModel" || rest.hasPrefix("For")
      }
    }
  }

  /// The layer prefixes `P` of modules named `P<suffix>`, ordered as a forward pass runs
  /// them: by their stack (the prefix without its number), then by number.
  static func layerPrefixes(_ modules: Set<String>, suffixes: [String]) -> [String] {
    var prefixes: Set<String> = []
    for module in modules {
      for suffix in suffixes where module.hasSuffix(suffix) {
        prefixes.insert(String(module.dropLast(suffix.count)))
      }
    }
    return prefixes.sorted { a, b in
      let (stackA, indexA) = split(a)
      let (stackB, indexB) = split(b)
      if stackA != stackB { return stackA < stackB }
      if indexA != indexB { return (indexA ?? -1) < (indexB ?? -1) }
      return a < b
    }
  }

  /// A layer prefix as its stack and number: "model.layers.3" is ("model.layers", 3).
  static func split(_ prefix: String) -> (stack: String, index: Int?) {
    guard let dot = prefix.lastIndex(of: ".") else { return Int(prefix).map { ("", $0) } ?? (prefix, nil) }
    guard let index = Int(prefix[prefix.index(after: dot)...]) else { return (prefix, nil) }
    return (String(prefix[..<dot]), index)
  }

  /// `base.name`, or `name` when `base` is empty.
  static func join(_ base: String, _ name: String) -> String { base.isEmpty ? name : base + "." + name }
}

extension JSONValue {
  /// A boolean value.
  var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }
}
