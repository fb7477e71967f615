import CheckpointIO
import Foundation

/// The modules of a checkpoint as the compressed-tensors readers see them: from tensor
/// names and dtypes alone, as compressed-tensors' model-free tools read a checkpoint.
struct StoredModules: Sendable {
  /// Modules whose weight is in a compressed-tensors quantized layout: `M.weight_packed`,
  /// or a `M.weight` of 8 bits or less with `M.weight_scale`.
  var quantized: [String] = []
  /// Modules with an unquantized floating-point `M.weight` (no `M.weight_scale`).
  var dense: [String] = []
  /// compressed-tensors' bitmask layouts: `M.bitmask` with `M.compressed`.
  var sparse: [String] = []
  /// factorize's `M.weight_a` and `M.weight_b` (dense or quantized).
  var factorized: [String] = []
  /// LQ-LoRA's correction `M.lowrank_a` / `M.lowrank_b`.
  var residual: [String] = []
  /// Modules stored unquantized, in checkpoint order: `dense`, and factorized modules whose
  /// factors are floating point (a quantize stage left them out).
  var unquantized: [String] = []
  /// The dtype and shape of every tensor, by name.
  var tensors: [String: PlannedTensor] = [:]

  init(_ tensors: [PlannedTensor]) {
    for tensor in tensors { self.tensors[tensor.name] = tensor }
    var seen: [Set<String>] = Array(repeating: [], count: 6)
    func add(_ module: String, to list: inout [String], _ kind: Int) {
      if seen[kind].insert(module).inserted { list.append(module) }
    }
    for tensor in tensors {
      let name = tensor.name
      // A saved transform matrix (transform_config's online rotation) is no module's weight.
      if OnlineRotation.isTransformMatrix(name, shape: tensor.shape) { continue }
      if let module = Self.module(name, ".weight_packed") {
        add(module, to: &quantized, 0)
      } else if let module = Self.module(name, ".weight"), self.tensors[module + ".weight_scale"] != nil,
        tensor.dtype.bitsPerElement <= 8
      {
        add(module, to: &quantized, 0)
      } else if let module = Self.module(name, ".weight"), tensor.dtype.isFloatingPoint {
        add(module, to: &dense, 1)
        add(module, to: &unquantized, 5)
      } else if let module = Self.module(name, ".bitmask"), self.tensors[module + ".compressed"] != nil {
        add(module, to: &sparse, 2)
      } else if let module = Self.module(name, ".weight_a") ?? Self.module(name, ".weight_a_packed") {
        add(module, to: &factorized, 3)
        // A factor of 8 bits or less with a scale is quantized (FP8 keeps the name weight_a).
        if name.hasSuffix(".weight_a"), tensor.dtype.isFloatingPoint,
          tensor.dtype.bitsPerElement > 8 || self.tensors[name + "_scale"] == nil
        {
          add(module, to: &unquantized, 5)
        }
      } else if let module = Self.module(name, ".lowrank_a") {
        add(module, to: &residual, 4)
      }
    }
  }

  /// The module of `name` when it ends with `suffix`.
  static func module(_ name: String, _ suffix: String) -> String? {
    name.hasSuffix(suffix) && name.count > suffix.count ? String(name.dropLast(suffix.count)) : nil
  }

  /// Whether `module`'s weight looks like a linear layer's: 2-D and not an embedding
  /// table (what transformers builds as `nn.Linear`, which a `Linear` target matches).
  func looksLinear(_ module: String) -> Bool {
    guard let weight = tensors[module + ".weight"] ?? tensors[module + ".weight_packed"] else { return false }
    return weight.shape.count == 2 && !TensorSelection.isEmbedding(weight.name)
  }
}

/// What every output promises its loaders, derived from the tensors written rather than
/// from the options that wrote them:
/// - `quantization_config.ignore` (and `sparsity_config.ignore`) names every module whose
///   weight is stored unquantized, so that transformers does not expect a quantized weight
///   there and compressed-tensors' model-free tools, which decide by names, do not look
///   for its scales;
/// - a layout no standard loader reads (factorized weights, a low-rank residual, bitmask
///   sparsity) is guarded so that loading it fails loudly instead of initialising
///   weights at random (`LoaderGuard`).
public enum LoaderContract {
  /// config.json keys swiftcompress records what it did under; a checkpoint without a
  /// config.json carries them in its weights' `__metadata__` (as JSON text).
  public static let recordKeys = ["quantization_config", LowRankRecord.configKey, LowRankRecord.residualConfigKey]

  /// Modules that transformers never takes for a `Linear` target (norms are not
  /// `nn.Linear`) and that compressed-tensors' model-free tools skip when the quantized
  /// weight has a name of its own (`weight_packed`): names ending in `norm`. Formats that
  /// keep the name `weight` (FP8) make the model-free tools look for every `M.weight`'s
  /// scale, norms included, so there the norms must be ignored too.
  static func isNorm(_ module: String) -> Bool { module.hasSuffix("norm") }

  /// The config groups of a `quantization_config` block.
  static func groups(of quantization: JSONValue?) -> [ConfigGroup] {
    (quantization?["config_groups"]?.members ?? []).map { member in
      let targets = (member.value["targets"]?.arrayValue ?? []).compactMap(\.stringValue)
      return ConfigGroup(
        name: member.key, targets: targets,
        format: member.value["format"]?.stringValue ?? quantization?["format"]?.stringValue ?? "",
        weights: member.value["weights"],
        nameRules: targets.filter { $0 != "Linear" }.compactMap { try? IgnoreRule($0) },
        codec: QuantizationConfig.codec(
          format: member.value["format"]?.stringValue ?? quantization?["format"]?.stringValue ?? "",
          weights: member.value["weights"]))
    }
  }

  /// Whether a name-based reader takes every `M.weight` for a quantized weight: a group
  /// targets `Linear` (all modules, by names) in a format whose quantized weight is named
  /// `weight`.
  static func readsEveryWeight(_ groups: [ConfigGroup]) -> Bool {
    groups.contains { $0.targets.contains("Linear") && $0.rootSuffix == ".weight" }
  }

  /// `config` with every ignore list completed from the tensors written: each module
  /// stored with an unquantized weight and not already ignored is appended by its exact
  /// name, in checkpoint order. The user's entries are kept first, unchanged.
  public static func reconciled(_ config: JSONValue, tensors: [PlannedTensor]) -> JSONValue {
    guard let quantization = config["quantization_config"], quantization.members != nil else { return config }
    let modules = StoredModules(tensors)
    var edited = quantization
    if quantization["config_groups"]?.members != nil {
      edited = completingIgnore(edited, dense: modules.unquantized, norms: readsEveryWeight(groups(of: quantization)))
    }
    if let sparsity = quantization["sparsity_config"], sparsity.members != nil {
      edited =
        edited.setting("sparsity_config", to: completingIgnore(sparsity, dense: modules.dense, norms: false)) ?? edited
    }
    return config.setting("quantization_config", to: edited) ?? config
  }

  private static func completingIgnore(_ block: JSONValue, dense: [String], norms: Bool) -> JSONValue {
    let existing = block["ignore"]?.arrayValue ?? []
    let rules = existing.compactMap { $0.stringValue.flatMap { try? IgnoreRule($0) } }
    var added: [JSONValue] = []
    for module in dense where (norms || !isNorm(module)) && !rules.contains(where: { $0.matches(module) }) {
      added.append(.string(module))
    }
    guard !added.isEmpty else { return block }
    return block.setting("ignore", to: .array(existing + added)) ?? block
  }

  /// `text` (a config.json a pass wrote) made to match `tensors`: ignore lists
  /// completed, and the loader guard set or removed. The text is kept as it is when
  /// nothing changes; otherwise it is rewritten in the same style (sorted keys, two-space
  /// indent, the same final newline or none).
  static func finished(_ text: String, tensors: [PlannedTensor]) -> (text: String, config: JSONValue?) {
    guard let config = try? JSONParser.parse(Array(text.utf8)) else { return (text, nil) }
    var edited = reconciled(config, tensors: tensors)
    edited = LoaderGuard.layouts(of: edited).isEmpty ? LoaderGuard.restored(edited) : LoaderGuard.guarded(edited)
    guard edited != config else { return (text, edited) }
    return (JSONText.pretty(edited, trailingNewline: text.hasSuffix("\n")), edited)
  }

  /// The config of `checkpoint`: its config.json, or for a checkpoint without one, the
  /// records its weights' `__metadata__` carries (an object of `recordKeys`). Nil when
  /// there is neither (or config.json is not valid JSON).
  public static func config(of checkpoint: Checkpoint) -> JSONValue? {
    if hasConfigFile(checkpoint) {
      return FileManager.default.contents(atPath: checkpoint.folder + "/config.json").flatMap {
        try? JSONParser.parse(Array($0))
      }
    }
    let records = recordsFromMetadata(checkpoint.metadata)
    return records.isEmpty ? nil : .object(records)
  }

  /// Where `config(of:)` reads: config.json, or without one the (first) weight file.
  public static func configPath(of checkpoint: Checkpoint) -> String {
    hasConfigFile(checkpoint) ? checkpoint.folder + "/config.json" : checkpoint.files.first?.path ?? checkpoint.path
  }

  /// Whether `checkpoint` is a folder with a config.json.
  static func hasConfigFile(_ checkpoint: Checkpoint) -> Bool {
    checkpoint.layout != .file && checkpoint.auxiliaryFiles.contains("config.json")
  }

  /// The records of `recordKeys` found in `metadata`, parsed.
  static func recordsFromMetadata(_ metadata: [String: String]?) -> [JSONMember] {
    recordKeys.compactMap { key in
      guard let text = metadata?[key], let value = try? JSONParser.parse(Array(text.utf8)), value.members != nil
      else { return nil }
      return JSONMember(key, value)
    }
  }
}

/// Outputs in a layout that no standard loader reads (factorized weights, a low-rank
/// residual on quantized weights, bitmask sparsity, which compressed-tensors 0.20 no
/// longer decodes) must not load with weights missing and initialised at random. Their
/// config.json gets `model_type: "swiftcompress"` and an `auto_map` into
/// `swiftcompress_modeling.py`, written beside it:
/// - transformers (and vLLM, which reads configs through it) refuses the folder unless
///   `trust_remote_code=True` is given, naming the file to inspect;
/// - with it, the file builds the original architecture with factorized layers as two
///   chained products (a plain `factorize` output loads and computes what `decompress`
///   computes), and refuses every other layout with an error that says to run
///   `swiftcompress decompress`.
/// The original `model_type`, `architectures` and `auto_map` are kept under
/// `swiftcompress_loader`, and `decompress` puts them back.
public enum LoaderGuard {
  public static let modelType = "swiftcompress"
  public static let recordKey = "swiftcompress_loader"
  public static let modelingFileName = "swiftcompress_modeling.py"

  /// The transformers auto classes the modeling file provides, with the architecture
  /// name suffix that selects each (the last is the fallback).
  static let autoClasses: [(auto: String, suffix: String)] = [
    ("AutoModelForCausalLM", "ForCausalLM"), ("AutoModelForMaskedLM", "ForMaskedLM"),
    ("AutoModelForSequenceClassification", "ForSequenceClassification"),
    ("AutoModelForTokenClassification", "ForTokenClassification"),
    ("AutoModelForQuestionAnswering", "ForQuestionAnswering"), ("AutoModel", "Model"),
  ]

  static func className(suffix: String) -> String { "Swiftcompress" + suffix }

  /// The layout the modeling file builds.
  static let factorized = "factorized weights"

  /// The swiftcompress-only layouts `config` records, as phrases: factorize's "factorized
  /// weights" (alone, the one the modeling file builds), "quantized factorized weights", "a
  /// low-rank residual", "bitmask-sparse weights".
  public static func layouts(of config: JSONValue) -> [String] {
    var layouts: [String] = []
    let quantized = config["quantization_config"]?["config_groups"]?.members?.isEmpty == false
    if config[LowRankRecord.configKey] != nil {
      layouts.append(quantized ? "quantized factorized weights" : factorized)
    }
    if config[LowRankRecord.residualConfigKey] != nil { layouts.append("a low-rank residual") }
    if let format = config["quantization_config"]?["sparsity_config"]?["format"]?.stringValue,
      SparseBitmask.formats.contains(format)
    {
      layouts.append("bitmask-sparse weights")
    }
    return layouts
  }

  /// Whether transformers can load such a checkpoint through the modeling file.
  static func loadable(_ layouts: [String], originalAutoMap: JSONValue?) -> Bool {
    layouts == [factorized] && (originalAutoMap == nil || originalAutoMap == .null)
  }

  /// `config` guarded (idempotent: an already guarded config keeps its record of the
  /// original).
  static func guarded(_ config: JSONValue) -> JSONValue {
    let layouts = layouts(of: config)
    var record = config[recordKey]?.members ?? []
    if record.isEmpty {
      for key in ["architectures", "auto_map", "model_type"] {
        record.append(JSONMember(key, config[key] ?? .null))
      }
    }
    let original = JSONValue.object(record)
    let loadable = loadable(layouts, originalAutoMap: original["auto_map"])
    record = record.filter { !["layouts", "loads_with"].contains($0.key) }
    record.append(JSONMember("layouts", .array(layouts.map { .string($0) })))
    record.append(
      JSONMember(
        "loads_with",
        .string(
          loadable
            ? "transformers with trust_remote_code=True (\(modelingFileName)), or swiftcompress decompress for a dense checkpoint"
            : "swiftcompress decompress only: no standard loader computes these layouts")))
    let architectures = (original["architectures"]?.arrayValue ?? []).compactMap(\.stringValue)
    let ours = architectures.map { name in
      className(suffix: autoClasses.first { name.hasSuffix($0.suffix) }?.suffix ?? "Model")
    }
    let autoMap = JSONValue.object(
      [JSONMember("AutoConfig", .string(moduleName + ".SwiftcompressConfig"))]
        + autoClasses.map { JSONMember($0.auto, .string(moduleName + "." + className(suffix: $0.suffix))) })
    var edited = config
    for (key, value) in [
      ("architectures", JSONValue.array((ours.isEmpty ? [className(suffix: "Model")] : ours).map { .string($0) })),
      ("auto_map", autoMap), ("model_type", .string(modelType)), (recordKey, .object(record)),
    ] {
      edited = edited.setting(key, to: value) ?? edited
    }
    return edited
  }

  /// `config` with the guard removed and the original `model_type`, `architectures` and
  /// `auto_map` back (absent ones removed).
  static func restored(_ config: JSONValue) -> JSONValue {
    guard let record = config[recordKey], var members = config.members else { return config }
    members.removeAll { $0.key == recordKey }
    for key in ["architectures", "auto_map", "model_type"] {
      let value = record[key] ?? .null
      if value == .null {
        members.removeAll { $0.key == key }
      } else if let i = members.firstIndex(where: { $0.key == key }) {
        members[i] = JSONMember(key, value)
      } else {
        members.append(JSONMember(key, value))
      }
    }
    return .object(members)
  }

  /// How a guarded checkpoint loads, for the run's note and `verify`'s.
  static func summary(of config: JSONValue) -> String {
    let found = layouts(of: config)
    let layouts = found.joined(separator: " and ")
    return loadable(found, originalAutoMap: config[recordKey]?["auto_map"])
      ? "holds \(layouts), which no standard loader reads: transformers loads it only with trust_remote_code=True, through \(modelingFileName), which builds the factorized layers (vLLM refuses it without --trust-remote-code); swiftcompress decompress makes it dense for every loader"
      : "holds \(layouts), which no standard loader reads: transformers and vLLM refuse it, and with trust_remote_code=True \(modelingFileName) says why; swiftcompress decompress makes it dense for every loader"
  }

  /// The original `model_type` a guarded config records.
  static func originalModelType(_ config: JSONValue) -> String? {
    config[recordKey]?["model_type"]?.stringValue
  }

  static var moduleName: String { String(modelingFileName.dropLast(3)) }

  /// The Python file a guarded output carries, for the original `modelType`.
  static func modelingSource(originalModelType modelType: String?) -> String {
    let classes = autoClasses.map { "    (\"\($0.auto)\", \"\(className(suffix: $0.suffix))\")," }.joined(
      separator: "\n")
    return """
      # Written by swiftcompress. `swiftcompress decompress IN OUT` turns this checkpoint
      # back into a standard one that every loader reads.
      \"\"\"Loads a checkpoint that swiftcompress wrote in a layout no standard transformers
      class reads, instead of loading it with weights missing.

      config.json names this file in `auto_map` and sets `model_type` to "swiftcompress", so
      transformers (and vLLM) refuse the folder unless `trust_remote_code=True` is given.
      With it:
      - factorized linear layers (config.swiftcompress_factorization: weight =
        weight_a @ weight_b) are built as two chained products and load exactly;
      - every other swiftcompress-only layout (quantized factors, a low-rank residual on
        quantized weights, bitmask-sparse weights) stops with an error.
      The original model_type, architectures and auto_map are in config.swiftcompress_loader.
      \"\"\"
      import torch
      import transformers
      from torch import nn
      from transformers.models.auto.configuration_auto import CONFIG_MAPPING

      ORIGINAL_MODEL_TYPE = \(JSONText.quoted(modelType ?? ""))
      DECOMPRESS = (
          "run `swiftcompress decompress IN OUT` for a dense checkpoint that transformers, "
          "vLLM and compressed-tensors read"
      )

      try:
          _BaseConfig = CONFIG_MAPPING[ORIGINAL_MODEL_TYPE]
      except KeyError:
          _BaseConfig = transformers.PretrainedConfig


      class SwiftcompressConfig(_BaseConfig):
          model_type = "swiftcompress"


      def _refusal(config):
          \"\"\"Why this checkpoint cannot be built here, or None.\"\"\"
          if ORIGINAL_MODEL_TYPE not in CONFIG_MAPPING:
              return f"its model type {ORIGINAL_MODEL_TYPE!r} is not one transformers knows"
          record = getattr(config, "swiftcompress_loader", None) or {}
          if record.get("auto_map"):
              return "its architecture comes with custom code, which this file cannot extend"
          layouts = record.get("layouts", [])
          other = [layout for layout in layouts if layout != "factorized weights"]
          if other or "factorized weights" not in layouts:
              return "it holds " + ", ".join(other or ["no factorized layers"]) + ", which no transformers module computes"
          return None


      class LowRankLinear(nn.Module):
          \"\"\"y = (x weight_b^T) weight_a^T + bias: a linear layer stored as two factors.\"\"\"

          def __init__(self, in_features, out_features, rank, bias):
              super().__init__()
              self.in_features = in_features
              self.out_features = out_features
              self.weight_a = nn.Parameter(torch.empty(out_features, rank))
              self.weight_b = nn.Parameter(torch.empty(rank, in_features))
              if bias:
                  self.bias = nn.Parameter(torch.empty(out_features))
              else:
                  self.register_parameter("bias", None)

          def forward(self, x):
              return nn.functional.linear(nn.functional.linear(x, self.weight_b), self.weight_a, self.bias)


      def _factorize(model, config):
          prefix = getattr(model, "base_model_prefix", "") or ""
          for name, rank in config.swiftcompress_factorization["modules"].items():
              candidates = [name]
              if prefix:
                  candidates += [prefix + "." + name, name.removeprefix(prefix + ".")]
              for candidate in candidates:
                  try:
                      linear = model.get_submodule(candidate)
                  except AttributeError:
                      continue
                  break
              else:
                  raise ValueError(f"swiftcompress: the factorized module {name!r} is not in {type(model).__name__}")
              parent_name, _, child = candidate.rpartition(".")
              parent = model.get_submodule(parent_name) if parent_name else model
              layer = LowRankLinear(linear.in_features, linear.out_features, int(rank), linear.bias is not None)
              setattr(parent, child, layer.to(device=linear.weight.device, dtype=linear.weight.dtype))


      def _model_class(auto_name, class_name):
          try:
              base = getattr(transformers, auto_name)._model_mapping[_BaseConfig]
          except (AttributeError, KeyError):
              base = None

          def __init__(self, config, *args, **kwargs):
              reason = _refusal(config)
              if reason is None and base is None:
                  reason = f"transformers has no {auto_name} for model type {ORIGINAL_MODEL_TYPE!r}"
              if reason is not None:
                  raise ValueError(f"This checkpoint was written by swiftcompress and cannot be loaded: {reason}; {DECOMPRESS}.")
              base.__init__(self, config, *args, **kwargs)
              _factorize(self, config)

          parent = base if base is not None else transformers.PreTrainedModel
          return type(class_name, (parent,), {"config_class": SwiftcompressConfig, "__init__": __init__, "__module__": __name__})


      for _auto_name, _class_name in [
      \(classes)
      ]:
          globals()[_class_name] = _model_class(_auto_name, _class_name)

      """
  }
}

extension LoaderContract {
  /// One config group of `quantization_config`, as compressed-tensors reads it.
  struct ConfigGroup {
    var name: String
    var targets: [String]
    var format: String
    var weights: JSONValue?
    /// The name targets (all but `Linear`), compiled once.
    var nameRules: [IgnoreRule] = []
    /// The codec that reads the group's layout, nil for a format none reads.
    var codec: (any QuantizationCodec)?

    /// The tensor a module's quantized weight is stored under, which compressed-tensors'
    /// model-free tools look for first (`weight` for the layouts that keep that name).
    var rootSuffix: String { codec?.keepsWeightName == true ? ".weight" : ".weight_packed" }

    /// Whether the group targets `module`: by class for `Linear` (transformers; here a
    /// module whose weight looks linear), or by name (exact, or `re:` matched from the start).
    func targets(_ module: String, looksLinear: Bool) -> Bool {
      (looksLinear && targets.contains("Linear")) || nameRules.contains { $0.matches(module) }
    }
  }

  /// Every mismatch between `checkpoint`'s config (config.json, or the records in its
  /// weights' `__metadata__`) and its tensors that changes what a loader does, as `verify`
  /// problems; and notes on how the checkpoint loads.
  public static func check(_ checkpoint: Checkpoint) -> (problems: [ValidationProblem], notes: [String]) {
    let where_ = configPath(of: checkpoint)
    let tensors = checkpoint.tensors.map { TensorDescriptor($0.info) }
    let modules = StoredModules(tensors)
    let config = config(of: checkpoint) ?? .object([])
    var problems: [ValidationProblem] = []
    var notes: [String] = []
    func problem(_ rule: ValidationRule, _ tensor: String?, _ detail: String) {
      problems.append(ValidationProblem(rule: rule, file: where_, tensor: tensor, detail: detail))
    }
    let quantization = config["quantization_config"]
    let groups = groups(of: quantization)
    if !groups.isEmpty {
      let norms = readsEveryWeight(groups)
      let rules = (quantization?["ignore"]?.arrayValue ?? []).compactMap {
        $0.stringValue.flatMap { try? IgnoreRule($0) }
      }
      func ignored(_ module: String) -> Bool { rules.contains { $0.matches(module) } }
      for module in modules.dense where (norms || !isNorm(module)) && !ignored(module) {
        let weight = module + ".weight"
        let stored = modules.tensors[weight].map { "\($0.dtype.rawValue) \($0.shape)" } ?? ""
        if let group = groups.first(where: { $0.targets(module, looksLinear: modules.looksLinear(module)) }) {
          problem(
            .configDenseTarget, weight,
            "stored unquantized (\(stored)), but config group '\(group.name)' targets '\(module)' and no ignore entry names it: transformers expects \(module + group.rootSuffix) there"
          )
        } else if let group = groups.first(where: { $0.targets.contains("Linear") && $0.rootSuffix == ".weight" }) {
          problem(
            .configDenseTarget, weight,
            "stored unquantized (\(stored)) and not in ignore: compressed-tensors' model-free dequantizer, which decides by names, reads it as a '\(group.format)' weight and stops at the missing \(module).weight_scale"
          )
        }
      }
      for module in modules.quantized {
        let looksLinear = modules.looksLinear(module)
        if ignored(module) {
          problem(
            .configIgnoredQuantized, module + ".weight_scale",
            "'\(module)' is stored quantized but quantization_config.ignore names it")
        } else if let group = groups.first(where: { $0.targets(module, looksLinear: looksLinear) }) {
          if let mismatch = layoutMismatch(module, group: group, modules: modules, checkpoint: checkpoint) {
            problem(
              .configLayout, module + ".weight_scale", "config group '\(group.name)' (\(group.format)): \(mismatch)")
          }
        } else {
          problem(
            .configIgnoredQuantized, module + ".weight_scale",
            "'\(module)' is stored quantized but no config group targets it (targets: \(groups.flatMap(\.targets).map { "'\($0)'" }.joined(separator: ", ")))"
          )
        }
      }
      if problems.isEmpty {
        let ignoredCount = modules.unquantized.filter { (norms || !isNorm($0)) && ignored($0) }.count
        let factorized = Set(modules.factorized).subtracting(modules.unquantized).count
        notes.append(
          "quantization_config matches the tensors: \(Format.count(modules.quantized.count, "module")) stored quantized\(factorized > 0 ? " and \(Format.count(factorized, "factorized module")) with quantized factors" : "") (\(groups.map { "'\($0.name)' \($0.format)" }.joined(separator: ", "))), \(Format.count(ignoredCount, "module")) stored unquantized and listed in ignore"
        )
      }
      notes += fusedNotes(
        modules, model: ModelAdapters.adapter(config: config, tensorNames: checkpoint.tensors.map(\.name)))
    }
    if let sparsity = quantization?["sparsity_config"] {
      let rules = (sparsity["ignore"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { try? IgnoreRule($0) } }
      for module in modules.sparse where rules.contains(where: { $0.matches(module) }) {
        problem(
          .configIgnoredQuantized, module + ".bitmask",
          "'\(module)' is stored as a bitmask but sparsity_config.ignore names it")
      }
    }
    if let record = config[LowRankRecord.configKey]?["modules"]?.members {
      let ranks = Dictionary(
        record.map { ($0.key, $0.value.uint64Value.map(Int.init)) }, uniquingKeysWith: { a, _ in a })
      for module in modules.factorized where ranks[module] == nil {
        problem(
          .configLayout, module + ".weight_a",
          "'\(module)' is stored factorized but \(LowRankRecord.configKey) does not list it")
      }
      for (module, rank) in ranks.sorted(by: { $0.key < $1.key }) {
        let a = modules.tensors[module + ".weight_a"] ?? modules.tensors[module + ".weight_a_packed"]
        if a == nil {
          problem(
            .configLayout, module + ".weight_a", "\(LowRankRecord.configKey) lists '\(module)', which has no weight_a")
        } else if let a, a.name.hasSuffix(".weight_a"), a.shape.count == 2, a.shape[1] != rank {
          problem(.configLayout, a.name, "has rank \(a.shape[1]) but \(LowRankRecord.configKey) records \(rank ?? -1)")
        }
      }
    }
    // Layouts no standard loader reads.
    var found: [String] = []
    if !modules.factorized.isEmpty {
      found.append("\(modules.factorized.count) factorized (weight_a x weight_b), e.g. '\(modules.factorized[0])'")
    }
    if !modules.residual.isEmpty {
      found.append(
        "\(modules.residual.count) with a low-rank residual (lowrank_a x lowrank_b), e.g. '\(modules.residual[0])'")
    }
    if !modules.sparse.isEmpty { found.append("\(modules.sparse.count) bitmask-sparse, e.g. '\(modules.sparse[0])'") }
    if !found.isEmpty {
      let modelType = config["model_type"]?.stringValue
      if !hasConfigFile(checkpoint) {
        notes.append(
          "no config.json: no standard loader builds a model from it; its modules are \(found.joined(separator: "; ")); swiftcompress decompress makes it dense"
        )
      } else if modelType != LoaderGuard.modelType {
        problem(
          .layoutUnguarded, nil,
          "modules stored in layouts no standard loader reads (\(found.joined(separator: "; "))), but config.json's model_type is '\(modelType ?? "none")' and it has no \(LoaderGuard.recordKey)"
        )
      } else if !FileManager.default.fileExists(atPath: checkpoint.folder + "/" + LoaderGuard.modelingFileName) {
        problem(
          .layoutUnguarded, nil,
          "config.json sends loaders to \(LoaderGuard.modelingFileName), which is missing: copy it from the output swiftcompress wrote, or rewrite the checkpoint"
        )
      } else {
        notes.append(LoaderGuard.summary(of: config))
      }
    }
    return (problems, notes)
  }

  /// How `module`'s tensors differ from what `group` describes, or nil: the group's codec
  /// lays out the dense weight the stored primary tensor stands for, and every tensor of
  /// that layout must be there with that dtype and shape.
  static func layoutMismatch(_ module: String, group: ConfigGroup, modules: StoredModules, checkpoint: Checkpoint)
    -> String?
  {
    let strategy = group.weights?["strategy"]?.stringValue ?? ""
    if ["group", "tensor_group"].contains(strategy), group.weights?["group_size"]?.uint64Value ?? 0 == 0 {
      return "strategy '\(strategy)' without a group_size"
    }
    guard let codec = group.codec else { return nil }  // a format no codec reads: not judged
    func describe(_ t: PlannedTensor) -> String { "\(t.name) is \(t.dtype.rawValue) \(t.shape)" }
    let primaryName = module + group.rootSuffix
    guard let primary = modules.tensors[primaryName] else { return "\(primaryName) is missing" }
    guard let dense = try? codec.densePrimary(primary) else {
      return "\(describe(primary)), which is not a \(codec.layoutName) weight"
    }
    // A stored weight_shape must be the dense shape the codes stand for.
    if let shape = modules.tensors[dense.name + "_shape"], let stored = checkpoint.tensor(named: shape.name) {
      guard shape.dtype == .i64, shape.elementCount == 2 else { return "\(describe(shape)), not I64 [2]" }
      let bytes = checkpoint.bytes(of: stored)
      let values = (0..<2).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
      guard values == dense.shape else {
        return
          "\(describe(primary)) holds a \(dense.shape) weight at \(codec.bits) bits, but weight_shape says \(values)"
      }
    }
    let scaleDType = modules.tensors[dense.name + "_scale"].map(\.dtype).flatMap { $0.isFloatingPoint ? $0 : nil }
    let expected: [PlannedTensor]
    do {
      expected = try codec.layout(
        of: PlannedTensor(name: dense.name, dtype: scaleDType ?? .f32, shape: dense.shape), module: module
      ).outputs
    } catch {
      return
        "a [\(dense.shape.map(String.init).joined(separator: ", "))] weight cannot be stored so: \(error.errorDescription ?? "\(error)")"
    }
    for tensor in expected {
      guard let stored = modules.tensors[tensor.name] else { return "\(tensor.name) is missing" }
      if stored.shape != tensor.shape || stored.dtype != tensor.dtype {
        return
          "\(describe(stored)), but \(codec.layoutName) with these arguments stores \(tensor.dtype.rawValue) \(tensor.shape) for a \(dense.shape) weight"
      }
    }
    return nil
  }

  /// vLLM fuses q/k/v (and gate/up) projections into one layer and refuses a layer whose
  /// parts are stored differently: one note per such layer, the attention sets first. The
  /// sets are the ones `model` says loaders fuse.
  static func fusedNotes(_ modules: StoredModules, model: any ModelAdapter = ModelAdapters.generic) -> [String] {
    let quantized = Set(modules.quantized)
    let dense = Set(modules.dense)
    // Each set at its first part.
    let sets = (modules.quantized + modules.dense).compactMap { module in
      model.fusedModules(of: module).flatMap { $0.modules.first == module ? $0 : nil }
    }
    var notes: [String] = []
    for kind in ModelDescription.FusedModules.Kind.allCases {
      for set in sets where set.kind == kind {
        let stem = ModelAdapters.module(ofTensor: set.modules[0]) + "."
        let parts = set.modules.map { String($0.dropFirst(stem.count)) }
        let kinds = set.modules.map {
          quantized.contains($0) ? "quantized" : dense.contains($0) ? "dense" : "absent"
        }
        if Set(kinds.filter { $0 != "absent" }).count > 1 {
          notes.append(
            "\(stem){\(parts.joined(separator: ","))} are stored \(kinds.joined(separator: "/")): vLLM fuses them into one layer and refuses parts stored differently (transformers loads them)"
          )
        }
      }
    }
    return notes
  }
}
