import Foundation
import Yams

/// One option value of a recipe: a scalar exactly as written (its type is decided by
/// the key that holds it), or a list of scalars.
public enum RecipeValue: Sendable, Equatable, Codable {
  case scalar(String)
  case list([String])

  public init(from decoder: any Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let list = try? c.decode([String].self) {
      self = .list(list)
    } else {
      self = .scalar(try c.decode(String.self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .scalar(let s): try c.encode(s)
    case .list(let l): try c.encode(l)
    }
  }
}

/// An option as written in a recipe, with its line (0 when not from a file).
public struct RecipeOption: Sendable, Equatable, Codable {
  public var value: RecipeValue
  public var line: Int

  public init(_ value: RecipeValue, line: Int = 0) {
    self.value = value
    self.line = line
  }

  public init(from decoder: any Decoder) throws {
    self.init(try RecipeValue(from: decoder))
  }

  public func encode(to encoder: any Encoder) throws {
    try value.encode(to: encoder)
  }
}

/// The kinds of stage a recipe chains, in the order a tensor usually meets them.
public enum StageKind: String, Codable, Sendable, CaseIterable {
  case prune, factorize, quantize
}

/// A per-tensor change of one stage's options: for tensors matching `targets`, these
/// options replace the stage's (later overrides win), or with `skip` the stage leaves
/// them alone.
public struct RecipeOverride: Sendable, Equatable, Codable {
  public var targets: [String]
  public var skip: Bool
  public var options: [String: RecipeOption]
  public var line: Int

  public init(targets: [String], skip: Bool = false, options: [String: RecipeOption] = [:], line: Int = 0) {
    self.targets = targets
    self.skip = skip
    self.options = options
    self.line = line
  }

  enum CodingKeys: String, CodingKey { case targets, skip, options }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    targets = try c.decode([String].self, forKey: .targets)
    skip = try c.decodeIfPresent(Bool.self, forKey: .skip) ?? false
    options = try c.decodeIfPresent([String: RecipeOption].self, forKey: .options) ?? [:]
    line = 0
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(targets, forKey: .targets)
    try c.encode(skip, forKey: .skip)
    try c.encode(options, forKey: .options)
  }
}

/// One stage of a recipe: a pass, the tensors it is offered and its options.
public struct RecipeStage: Sendable, Equatable, Codable {
  public var kind: StageKind
  /// Regular expressions searched in tensor names, or module-type shorthands
  /// (`Linear`, `Embedding`). nil: the default selection (2-D and larger floating-point
  /// tensors that are not embeddings), as the single-pass commands use.
  public var targets: [String]?
  /// Regular expressions of tensors the stage leaves alone.
  public var exclude: [String]
  public var options: [String: RecipeOption]
  public var overrides: [RecipeOverride]
  public var line: Int

  public init(
    kind: StageKind, targets: [String]? = nil, exclude: [String] = [], options: [String: RecipeOption] = [:],
    overrides: [RecipeOverride] = [], line: Int = 0
  ) {
    self.kind = kind
    self.targets = targets
    self.exclude = exclude
    self.options = options
    self.overrides = overrides
    self.line = line
  }

  enum CodingKeys: String, CodingKey { case kind, targets, exclude, options, overrides }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    kind = try c.decode(StageKind.self, forKey: .kind)
    targets = try c.decodeIfPresent([String].self, forKey: .targets)
    exclude = try c.decodeIfPresent([String].self, forKey: .exclude) ?? []
    options = try c.decodeIfPresent([String: RecipeOption].self, forKey: .options) ?? [:]
    overrides = try c.decodeIfPresent([RecipeOverride].self, forKey: .overrides) ?? []
    line = 0
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encodeIfPresent(targets, forKey: .targets)
    try c.encode(exclude, forKey: .exclude)
    try c.encode(options, forKey: .options)
    try c.encode(overrides, forKey: .overrides)
  }
}

/// A recipe's `evaluate:` block: after the run, `evaluate` of the input against the output on
/// this data, with these gates (docs/recipes.md, docs/evaluation.md).
public struct RecipeEvaluation: Sendable, Equatable, Codable {
  /// A text data file (tokenized with the input model's tokenizer.json) ...
  public var data: String?
  /// ... or a token-ids file.
  public var tokens: String?
  public var sampling: SamplingOptions
  public var batchTokens: Int?
  public var gates: EvaluationGates

  /// The keys of the block, as docs/recipes.md lists them.
  public static let keys = [
    "data", "tokens", "samples", "seed", "seq_len", "pack", "batch_tokens", "max_kld", "min_top1", "min_cosine",
  ]

  public init(
    data: String? = nil, tokens: String? = nil, sampling: SamplingOptions = SamplingOptions(), batchTokens: Int? = nil,
    gates: EvaluationGates = EvaluationGates()
  ) {
    self.data = data
    self.tokens = tokens
    self.sampling = sampling
    self.batchTokens = batchTokens
    self.gates = gates
  }

  enum CodingKeys: String, CodingKey {
    case data, tokens, samples, seed, pack
    case seqLen = "seq_len"
    case batchTokens = "batch_tokens"
    case maxKLD = "max_kld"
    case minTop1 = "min_top1"
    case minCosine = "min_cosine"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    data = try c.decodeIfPresent(String.self, forKey: .data)
    tokens = try c.decodeIfPresent(String.self, forKey: .tokens)
    sampling = SamplingOptions(
      samples: try c.decodeIfPresent(Int.self, forKey: .samples),
      seed: try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? SamplingOptions.defaultSeed,
      seqLen: try c.decodeIfPresent(Int.self, forKey: .seqLen),
      pack: try c.decodeIfPresent(Bool.self, forKey: .pack) ?? false)
    batchTokens = try c.decodeIfPresent(Int.self, forKey: .batchTokens)
    gates = EvaluationGates(
      maxKLD: try c.decodeIfPresent(Double.self, forKey: .maxKLD),
      minTop1: try c.decodeIfPresent(Double.self, forKey: .minTop1),
      minCosine: try c.decodeIfPresent(Double.self, forKey: .minCosine))
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encodeIfPresent(data, forKey: .data)
    try c.encodeIfPresent(tokens, forKey: .tokens)
    try c.encodeIfPresent(sampling.samples, forKey: .samples)
    try c.encode(sampling.seed, forKey: .seed)
    try c.encodeIfPresent(sampling.seqLen, forKey: .seqLen)
    try c.encode(sampling.pack, forKey: .pack)
    try c.encodeIfPresent(batchTokens, forKey: .batchTokens)
    try c.encodeIfPresent(gates.maxKLD, forKey: .maxKLD)
    try c.encodeIfPresent(gates.minTop1, forKey: .minTop1)
    try c.encodeIfPresent(gates.minCosine, forKey: .minCosine)
  }

  /// The block as YAML lines (indented under `evaluate:`).
  func yamlLines() -> [String] {
    var lines = ["evaluate:"]
    if let data { lines.append("  data: \(YAMLText.scalar(data))") }
    if let tokens { lines.append("  tokens: \(YAMLText.scalar(tokens))") }
    if let v = sampling.samples { lines.append("  samples: \(v)") }
    if sampling.seed != SamplingOptions.defaultSeed { lines.append("  seed: \(sampling.seed)") }
    if let v = sampling.seqLen { lines.append("  seq_len: \(v)") }
    if sampling.pack { lines.append("  pack: true") }
    if let v = batchTokens { lines.append("  batch_tokens: \(v)") }
    if let v = gates.maxKLD { lines.append("  max_kld: \(YAMLText.number(v))") }
    if let v = gates.minTop1 { lines.append("  min_top1: \(YAMLText.number(v))") }
    if let v = gates.minCosine { lines.append("  min_cosine: \(YAMLText.number(v))") }
    return lines
  }
}

/// A recipe: stages applied in order to every tensor they select, and quality gates.
/// Read from YAML (docs/recipes.md); every run writes its effective recipe into the
/// output folder, which `swiftcompress run` reproduces byte for byte.
public struct Recipe: Sendable, Equatable, Codable {
  /// Where the recipe came from, for messages.
  public var file: String
  public var stages: [RecipeStage]
  public var gates: QualityGates
  /// The `evaluate:` block: input against output on data, after the run.
  public var evaluate: RecipeEvaluation?

  public static let fileName = "swiftcompress-recipe.yaml"

  public init(file: String = "recipe", stages: [RecipeStage], gates: QualityGates = QualityGates()) {
    self.file = file
    self.stages = stages
    self.gates = gates
  }

  enum CodingKeys: String, CodingKey { case stages, gates, evaluate }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    file = "recipe"
    stages = try c.decode([RecipeStage].self, forKey: .stages)
    gates = try c.decodeIfPresent(QualityGates.self, forKey: .gates) ?? QualityGates()
    evaluate = try c.decodeIfPresent(RecipeEvaluation.self, forKey: .evaluate)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(stages, forKey: .stages)
    try c.encode(gates, forKey: .gates)
    try c.encodeIfPresent(evaluate, forKey: .evaluate)
  }

  /// Reads and parses the recipe at `path`.
  public static func load(_ path: String) throws(SwiftCompressError) -> Recipe {
    guard FileManager.default.fileExists(atPath: path) else { throw .recipeNotFound(path) }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw .invalidRecipe(file: path, line: 0, key: nil, reason: "cannot be read")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw .invalidRecipe(file: path, line: 0, key: nil, reason: "is not UTF-8 text")
    }
    return try parse(text, file: path)
  }

  /// Parses recipe YAML. Every error names the file, the line and the key, and lists
  /// what is allowed there.
  public static func parse(_ text: String, file: String = "recipe") throws(SwiftCompressError) -> Recipe {
    let root: Node?
    do {
      root = try Yams.compose(yaml: text)
    } catch {
      throw .invalidRecipe(file: file, line: Self.line(of: error), key: nil, reason: "is not valid YAML: \(error)")
    }
    let reader = YAMLReader(file: file)
    guard let root, case .mapping(let top) = root else {
      throw .invalidRecipe(
        file: file, line: root?.mark?.line ?? 0, key: nil,
        reason: "must be a mapping with 'stages' (a list) and optionally 'gates' and 'evaluate'")
    }
    let members = try reader.members(top, allowed: ["stages", "gates", "evaluate"], context: "the top level")
    guard let stagesNode = members["stages"] else {
      throw .invalidRecipe(
        file: file, line: root.mark?.line ?? 0, key: "stages", reason: "is missing: list at least one stage")
    }
    guard case .sequence(let list) = stagesNode.value, !list.isEmpty else {
      throw .invalidRecipe(
        file: file, line: stagesNode.line, key: "stages",
        reason: "must be a non-empty list of stages such as '- quantize: {scheme: W4A16}'")
    }
    var stages: [RecipeStage] = []
    for item in list {
      stages.append(try reader.stage(item))
    }
    var gates = QualityGates()
    if let gatesNode = members["gates"] {
      guard case .mapping(let mapping) = gatesNode.value else {
        throw .invalidRecipe(
          file: file, line: gatesNode.line, key: "gates",
          reason: "must be a mapping of max_error, min_sqnr, max_bpw, min_ratio")
      }
      let g = try reader.members(mapping, allowed: ["max_error", "min_sqnr", "max_bpw", "min_ratio"], context: "gates")
      func number(_ key: String) throws(SwiftCompressError) -> Double? {
        guard let entry = g[key] else { return nil }
        guard case .scalar(let s) = entry.value, let value = Double(s.string), value.isFinite else {
          throw .invalidRecipe(file: file, line: entry.line, key: key, reason: "must be a number")
        }
        return value
      }
      gates = QualityGates(
        maxError: try number("max_error"), minSQNR: try number("min_sqnr"), maxBitsPerWeight: try number("max_bpw"),
        minRatio: try number("min_ratio"))
      do {
        try gates.validate()
      } catch {
        throw .invalidRecipe(file: file, line: gatesNode.line, key: "gates", reason: error.errorDescription ?? "")
      }
    }
    var recipe = Recipe(file: file, stages: stages, gates: gates)
    if let node = members["evaluate"] { recipe.evaluate = try reader.evaluation(node) }
    return recipe
  }

  static func line(of error: any Error) -> Int {
    if let yaml = error as? YamlError {
      switch yaml {
      case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
        return mark.line
      default: return 0
      }
    }
    return 0
  }

  /// The recipe as YAML, every scalar quoted where YAML would change its meaning.
  public func yamlText() -> String {
    var lines = ["# swiftcompress recipe: run it with 'swiftcompress run RECIPE IN OUT' (docs/recipes.md)", "stages:"]
    for stage in stages {
      lines.append("  - \(stage.kind.rawValue):")
      if let targets = stage.targets { lines.append("      targets: \(YAMLText.list(targets))") }
      if !stage.exclude.isEmpty { lines.append("      exclude: \(YAMLText.list(stage.exclude))") }
      for key in stage.options.keys.sorted() {
        lines.append("      \(key): \(YAMLText.value(stage.options[key]!.value))")
      }
      if !stage.overrides.isEmpty {
        lines.append("      overrides:")
        for o in stage.overrides {
          lines.append("        - targets: \(YAMLText.list(o.targets))")
          if o.skip { lines.append("          skip: true") }
          for key in o.options.keys.sorted() {
            lines.append("          \(key): \(YAMLText.value(o.options[key]!.value))")
          }
        }
      }
    }
    if !gates.isEmpty {
      lines.append("gates:")
      if let v = gates.maxError { lines.append("  max_error: \(YAMLText.number(v))") }
      if let v = gates.minSQNR { lines.append("  min_sqnr: \(YAMLText.number(v))") }
      if let v = gates.maxBitsPerWeight { lines.append("  max_bpw: \(YAMLText.number(v))") }
      if let v = gates.minRatio { lines.append("  min_ratio: \(YAMLText.number(v))") }
    }
    if let evaluate { lines += evaluate.yamlLines() }
    return lines.joined(separator: "\n") + "\n"
  }
}

/// YAML scalars written so that a YAML 1.1 or 1.2 reader gives back the same text.
enum YAMLText {
  static func scalar(_ s: String) -> String {
    if Int(s) != nil || (Double(s) != nil && s.allSatisfy({ "0123456789.-+e".contains($0) })) { return s }
    if ["true", "false"].contains(s) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
  }

  static func list(_ items: [String]) -> String {
    "[" + items.map(scalar).joined(separator: ", ") + "]"
  }

  static func value(_ v: RecipeValue) -> String {
    switch v {
    case .scalar(let s): scalar(s)
    case .list(let l): list(l)
    }
  }

  static func number(_ v: Double) -> String {
    String(format: "%g", v)
  }
}

/// Reads recipe nodes, with the file name and line in every error.
struct YAMLReader {
  let file: String

  struct Entry {
    var value: Node
    var line: Int
  }

  /// A mapping's members by key; unknown and repeated keys are errors listing the allowed ones.
  func members(_ mapping: Node.Mapping, allowed: [String], context: String) throws(SwiftCompressError) -> [String:
    Entry]
  {
    var result: [String: Entry] = [:]
    for (keyNode, value) in mapping {
      let line = keyNode.mark?.line ?? mapping.mark?.line ?? 0
      guard let key = keyNode.string else {
        throw .invalidRecipe(file: file, line: line, key: nil, reason: "keys in \(context) must be plain words")
      }
      guard allowed.contains(key) else {
        throw .invalidRecipe(
          file: file, line: line, key: key,
          reason: "is not a key of \(context); allowed: \(allowed.joined(separator: ", "))")
      }
      guard result[key] == nil else {
        throw .invalidRecipe(file: file, line: line, key: key, reason: "is given twice in \(context)")
      }
      result[key] = Entry(value: value, line: line)
    }
    return result
  }

  func strings(_ entry: Entry, key: String) throws(SwiftCompressError) -> [String] {
    switch entry.value {
    case .scalar(let s): return [s.string]
    case .sequence(let items):
      var out: [String] = []
      for item in items {
        guard case .scalar(let s) = item else {
          throw .invalidRecipe(
            file: file, line: item.mark?.line ?? entry.line, key: key, reason: "must be a list of strings")
        }
        out.append(s.string)
      }
      return out
    default:
      throw .invalidRecipe(file: file, line: entry.line, key: key, reason: "must be a string or a list of strings")
    }
  }

  func option(_ entry: Entry, key: String) throws(SwiftCompressError) -> RecipeOption {
    switch entry.value {
    case .scalar(let s): return RecipeOption(.scalar(s.string), line: entry.line)
    case .sequence: return RecipeOption(.list(try strings(entry, key: key)), line: entry.line)
    default:
      throw .invalidRecipe(file: file, line: entry.line, key: key, reason: "must be a value or a list, not a mapping")
    }
  }

  /// The `evaluate:` block: data (or tokens), sampling and gates.
  func evaluation(_ entry: Entry) throws(SwiftCompressError) -> RecipeEvaluation {
    guard case .mapping(let mapping) = entry.value else {
      throw .invalidRecipe(
        file: file, line: entry.line, key: "evaluate",
        reason: "must be a mapping such as '{data: eval.txt, samples: 64, max_kld: 0.05}'")
    }
    let m = try members(mapping, allowed: RecipeEvaluation.keys, context: "evaluate")
    func text(_ key: String) throws(SwiftCompressError) -> String? {
      guard let e = m[key] else { return nil }
      guard case .scalar(let s) = e.value, !s.string.isEmpty else {
        throw .invalidRecipe(file: file, line: e.line, key: key, reason: "must be a file path")
      }
      return s.string
    }
    func integer(_ key: String, minimum: Int) throws(SwiftCompressError) -> Int? {
      guard let e = m[key] else { return nil }
      guard case .scalar(let s) = e.value, let value = Int(s.string), value >= minimum else {
        throw .invalidRecipe(file: file, line: e.line, key: key, reason: "must be an integer >= \(minimum)")
      }
      return value
    }
    func number(_ key: String) throws(SwiftCompressError) -> Double? {
      guard let e = m[key] else { return nil }
      guard case .scalar(let s) = e.value, let value = Double(s.string), value.isFinite else {
        throw .invalidRecipe(file: file, line: e.line, key: key, reason: "must be a number")
      }
      return value
    }
    var result = RecipeEvaluation(data: try text("data"), tokens: try text("tokens"))
    if (result.data == nil) == (result.tokens == nil) {
      throw .invalidRecipe(
        file: file, line: entry.line, key: "evaluate",
        reason: "give the samples as one of 'data' (a text file) or 'tokens' (a token-ids file)")
    }
    result.sampling.samples = try integer("samples", minimum: 1)
    if let e = m["seed"] {
      guard case .scalar(let s) = e.value, let seed = UInt64(s.string) else {
        throw .invalidRecipe(file: file, line: e.line, key: "seed", reason: "must be an integer >= 0")
      }
      result.sampling.seed = seed
    }
    result.sampling.seqLen = try integer("seq_len", minimum: 1)
    if let e = m["pack"] {
      guard case .scalar(let s) = e.value, let pack = Bool(s.string) else {
        throw .invalidRecipe(file: file, line: e.line, key: "pack", reason: "must be true or false")
      }
      result.sampling.pack = pack
      if pack && result.sampling.seqLen == nil {
        throw .invalidRecipe(
          file: file, line: e.line, key: "pack", reason: "needs seq_len, the length of the packed samples")
      }
    }
    result.batchTokens = try integer("batch_tokens", minimum: 1)
    result.gates = EvaluationGates(
      maxKLD: try number("max_kld"), minTop1: try number("min_top1"), minCosine: try number("min_cosine"))
    do {
      try result.gates.validate()
    } catch {
      throw .invalidRecipe(file: file, line: entry.line, key: "evaluate", reason: error.errorDescription ?? "")
    }
    return result
  }

  /// `- quantize: {scheme: W4A16, ...}`: one key, the stage kind.
  func stage(_ node: Node) throws(SwiftCompressError) -> RecipeStage {
    let line = node.mark?.line ?? 0
    let kinds = StageKind.allCases.map(\.rawValue)
    guard case .mapping(let mapping) = node, mapping.count == 1, let (keyNode, body) = mapping.first else {
      throw .invalidRecipe(
        file: file, line: line, key: nil,
        reason: "a stage is one key, its kind (\(kinds.joined(separator: ", "))), holding its options")
    }
    guard let name = keyNode.string, let kind = StageKind(rawValue: name) else {
      throw .invalidRecipe(
        file: file, line: keyNode.mark?.line ?? line, key: keyNode.string,
        reason: "is not a stage kind; allowed: \(kinds.joined(separator: ", "))")
    }
    let stageLine = keyNode.mark?.line ?? line
    var stage = RecipeStage(kind: kind, line: stageLine)
    if case .scalar(let s) = body, s.string.isEmpty || s.string == "null" || s.string == "~" {
      return stage
    }
    guard case .mapping(let options) = body else {
      throw .invalidRecipe(file: file, line: stageLine, key: name, reason: "must hold a mapping of options")
    }
    let allowed = ["targets", "exclude", "overrides"] + kind.configurationType.optionKeys
    let entries = try members(options, allowed: allowed, context: "a \(name) stage")
    for (key, entry) in entries {
      switch key {
      case "targets": stage.targets = try strings(entry, key: key)
      case "exclude": stage.exclude = try strings(entry, key: key)
      case "overrides":
        guard case .sequence(let items) = entry.value else {
          throw .invalidRecipe(
            file: file, line: entry.line, key: key, reason: "must be a list of {targets: [...], <option>: <value>}")
        }
        for item in items { stage.overrides.append(try override(item, kind: kind)) }
      default: stage.options[key] = try option(entry, key: key)
      }
    }
    return stage
  }

  func override(_ node: Node, kind: StageKind) throws(SwiftCompressError) -> RecipeOverride {
    let line = node.mark?.line ?? 0
    guard case .mapping(let mapping) = node else {
      throw .invalidRecipe(file: file, line: line, key: "overrides", reason: "each override must be a mapping")
    }
    let allowed = ["targets", "skip"] + kind.configurationType.overrideKeys
    let entries = try members(mapping, allowed: allowed, context: "a \(kind.rawValue) override")
    guard let targets = entries["targets"] else {
      throw .invalidRecipe(
        file: file, line: line, key: "targets", reason: "is missing: an override applies to the tensors it targets")
    }
    var result = RecipeOverride(targets: try strings(targets, key: "targets"), line: line)
    for (key, entry) in entries where key != "targets" {
      if key == "skip" {
        guard case .scalar(let s) = entry.value, let flag = Bool(s.string) else {
          throw .invalidRecipe(file: file, line: entry.line, key: key, reason: "must be true or false")
        }
        result.skip = flag
      } else {
        result.options[key] = try option(entry, key: key)
      }
    }
    return result
  }
}
