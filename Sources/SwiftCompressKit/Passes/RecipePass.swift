import CheckpointIO
import Foundation

/// The tensors a stage or an override applies to: regular expressions searched in the
/// tensor name, or module-type shorthands (`Linear`: a 2-D floating-point `.weight`
/// that is not an embedding; `Embedding`: a 2-D embedding table).
struct StageTargets: @unchecked Sendable {  // Regex is immutable after init
  let entries: [String]
  private let regexes: [Regex<AnyRegexOutput>?]

  static let shorthands = ["Linear", "Embedding"]

  init(_ entries: [String], file: String, line: Int, key: String) throws(SwiftCompressError) {
    self.entries = entries
    regexes = try entries.map { (entry) throws(SwiftCompressError) -> Regex<AnyRegexOutput>? in
      if StageTargets.shorthands.contains(entry) { return nil }
      let pattern = entry.hasPrefix("re:") ? String(entry.dropFirst(3)) : entry
      do {
        return try Regex(pattern)
      } catch {
        throw .invalidRecipe(
          file: file, line: line, key: key,
          reason:
            "'\(entry)' is neither a shorthand (\(StageTargets.shorthands.joined(separator: ", "))) nor a valid regular expression: \(error)"
        )
      }
    }
  }

  /// The first entry matching `tensor`, or nil. `model` says what the shorthands are.
  func match(_ tensor: TensorDescriptor, model: any ModelAdapter) -> String? {
    for (entry, regex) in zip(entries, regexes) {
      if let regex {
        if tensor.name.contains(regex) { return entry }
      } else if Self.isA(entry, tensor, model: model) {
        return entry
      }
    }
    return nil
  }

  /// Every entry matching `tensor`, as `model` sees the shorthands.
  func matches(_ tensor: TensorDescriptor, model: any ModelAdapter) -> [String] {
    zip(entries, regexes).compactMap { entry, regex in
      if let regex { return tensor.name.contains(regex) ? entry : nil }
      return Self.isA(entry, tensor, model: model) ? entry : nil
    }
  }

  /// Whether `t` is what `shorthand` names, as `model` sees it.
  static func isA(_ shorthand: String, _ t: TensorDescriptor, model: any ModelAdapter = ModelAdapters.generic) -> Bool {
    switch shorthand {
    case "Linear": return model.isLinearWeight(t)
    case "Embedding": return t.shape.count == 2 && model.isEmbedding(t.name)
    default: return false
    }
  }

  var described: String { entries.map { "'\($0)'" }.joined(separator: ", ") }
}

/// A recipe as one pass: every tensor goes through the stages in order, each stage
/// taking what the previous one produced (prune then quantize, factorize then quantize
/// the factors); a quantized tensor is final. All is planned from names, dtypes and
/// shapes before any data is read, so `--dry-run` shows exactly what a run writes.
///
/// Stages that need whole-model statistics (global or structured pruning, rank
/// budgets, energy and error rank rules) must come first: they are computed from the
/// input weights.
public struct RecipePass: CompressionPass {
  public typealias Configuration = Recipe
  public static let identifier = "recipe"
  public static let summary = "prune, factorize and quantize stages chained on each tensor"

  public let configuration: Recipe

  struct Override: Sendable {
    var targets: StageTargets
    var recipe: RecipeOverride
  }

  struct Stage: Sendable {
    var number: Int
    var recipe: RecipeStage
    var base: any CompressionPass
    var targets: StageTargets?
    var exclude: StageTargets
    var overrides: [Override]
    /// The prepared pass of every combination of matching overrides ("" for none).
    var variants: [String: any CompressionPass] = [:]

    var label: String { "stage \(number) (\(recipe.kind.rawValue))" }
  }

  var stages: [Stage]
  /// The checkpoint's model adapter (what `Linear`, `Embedding` and the default selection
  /// mean), from `prepared(for:)`.
  var model: any ModelAdapter = ModelAdapters.generic
  /// The names of the tensors the plan changes, in checkpoint order, from `planned(transforming:)`.
  var plannedNames: [String] = []

  public init(configuration: Recipe) throws(SwiftCompressError) {
    self.configuration = configuration
    let file = configuration.file
    var stages: [Stage] = []
    for (i, recipe) in configuration.stages.enumerated() {
      let base = try recipe.kind.pass(options: recipe.options, file: file, stageLine: recipe.line)
      let label = "stage \(i + 1) (\(recipe.kind.rawValue))"
      func refuse(_ reason: String) -> SwiftCompressError {
        .invalidRecipe(file: file, line: recipe.line, key: recipe.kind.rawValue, reason: reason)
      }
      if i > 0, let why = base.wholeModelRequirement {
        throw refuse("\(label) \(why), computed from the input weights, so it must be the first stage")
      }
      if let why = base.allTensorsRequirement, recipe.targets != nil || !recipe.exclude.isEmpty {
        throw refuse("\(label) \(why)")
      }
      if !recipe.overrides.isEmpty, let why = base.wholeModelRequirement {
        throw refuse("\(label) \(why), so its options cannot change per tensor: remove its overrides")
      }
      if let why = base.chainingRefusal, i < configuration.stages.count - 1 {
        throw refuse("\(label) \(why)")
      }
      if recipe.kind == .quantize, let first = configuration.stages[..<i].firstIndex(where: { $0.kind == .quantize }) {
        throw refuse(
          "\(label) is the second quantize stage (the first is stage \(first + 1)): one quantize stage writes the checkpoint's quantization_config; give its modules different schemes with scheme_for or overrides (docs/mixed-precision.md)"
        )
      }
      var overrides: [Override] = []
      for o in recipe.overrides {
        overrides.append(
          Override(targets: try StageTargets(o.targets, file: file, line: o.line, key: "targets"), recipe: o))
      }
      stages.append(
        Stage(
          number: i + 1, recipe: recipe, base: base,
          targets: try recipe.targets.map { (t) throws(SwiftCompressError) in
            try StageTargets(t, file: file, line: recipe.line, key: "targets")
          },
          exclude: try StageTargets(recipe.exclude, file: file, line: recipe.line, key: "exclude"),
          overrides: overrides))
    }
    self.stages = stages
  }

  /// Every stage's passes, prepared for `checkpoint`: one per combination of overrides
  /// that some tensor matches.
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> RecipePass {
    var pass = self
    pass.model = ModelAdapters.adapter(for: checkpoint)
    for s in pass.stages.indices {
      let stage = pass.stages[s]
      var keys: Set<String> = []
      for tensor in checkpoint.tensors {
        let (key, skipped) = pass.overrideKey(stage, TensorDescriptor(tensor.info))
        if !skipped { keys.insert(key) }
      }
      for key in keys.sorted() {
        let variant: any CompressionPass
        if key.isEmpty {
          variant = stage.base
        } else {
          var options = stage.recipe.options
          for index in key.split(separator: ",").compactMap({ Int($0) }) {
            options.merge(stage.overrides[index].recipe.options) { _, new in new }
          }
          let last = key.split(separator: ",").last.flatMap { Int($0) } ?? 0
          variant = try stage.recipe.kind.pass(
            options: options, file: configuration.file, stageLine: stage.overrides[last].recipe.line)
        }
        pass.stages[s].variants[key] = try variant.prepared(for: checkpoint)
      }
    }
    for s in pass.stages.indices { pass.shareGlobalScales(s, checkpoint) }
    return pass
  }

  /// The global scale a set of modules shares in a quantize stage (q/k/v under NVFP4): from
  /// the modules that take a sharing scheme in the variant their weight falls in, as with
  /// `--scheme-for`, `--ignore` and `--exclude` (a module an override skips does not count;
  /// one the stage's targets leave out does), not from every module each variant would take
  /// alone. A weight an earlier stage renamed (factorize's factors) does not count either:
  /// its factors get scales of their own. The amax is the input weight's.
  private mutating func shareGlobalScales(_ s: Int, _ checkpoint: Checkpoint) {
    let variants = stages[s].variants.compactMapValues { $0 as? QuantizePass }
    guard variants.values.contains(where: { !$0.absMaxima.isEmpty }) else { return }
    var absMaxima: [String: (amax: Float, dtype: DType)] = [:]
    for tensor in checkpoint.tensors {
      guard let module = LinearWeights.module(of: tensor.name) else { continue }
      let descriptor = TensorDescriptor(tensor.info)
      let (key, skipped) = overrideKey(stages[s], descriptor)
      guard !skipped, let entry = variants[key]?.absMaxima[module], !renamedBefore(s, descriptor) else { continue }
      absMaxima[module] = entry
    }
    let scales = QuantizePass.sharedGlobalScales(absMaxima, model: model)
    for (key, var variant) in variants {
      variant.globalScales = scales
      stages[s].variants[key] = variant
    }
  }

  /// Whether a stage before `s` gives `tensor` other names (factorize's factors).
  func renamedBefore(_ s: Int, _ tensor: TensorDescriptor) -> Bool {
    (try? trace(tensor))?.steps.contains {
      $0.stage < s && $0.input.tensor.name == tensor.name && !$0.outputs.contains { $0.name == tensor.name }
    } == true
  }

  /// The matching overrides of `tensor` as a key ("0,2"), and whether one of them says skip.
  func overrideKey(_ stage: Stage, _ tensor: TensorDescriptor) -> (String, Bool) {
    var matched: [Int] = []
    var skip = false
    for (i, o) in stage.overrides.enumerated() where o.targets.match(tensor, model: model) != nil {
      if o.recipe.skip {
        skip = true
      } else if !o.recipe.options.isEmpty {
        matched.append(i)
      }
    }
    return (matched.map(String.init).joined(separator: ","), skip)
  }

  /// One tensor as a stage produced it: `producer` is the step index, -1 for the input.
  struct Node: Sendable, Equatable {
    var tensor: PlannedTensor
    var producer: Int
  }

  struct Step: Sendable {
    var stage: Int
    var pass: any CompressionPass
    var input: Node
    var outputs: [PlannedTensor]
    var note: String?
  }

  /// What the recipe does to one tensor, and why.
  struct Trace: Sendable {
    var steps: [Step] = []
    var outputs: [Node] = []
    var explanation: [String] = []
    var keepReasons: [String] = []
  }

  /// Whether `stage` takes `tensor` (by its input name), with the reason.
  func select(_ stage: Stage, _ tensor: TensorDescriptor, usesDefaults: Bool) -> (Bool, String) {
    if let hit = stage.exclude.match(tensor, model: model) { return (false, "matches exclude '\(hit)'") }
    guard let targets = stage.targets else {
      switch TensorSelection.defaultSelection.adapted(to: model).decide(tensor, defaults: usesDefaults) {
      case .selected: return (true, "default selection")
      case .skipped(let reason): return (false, reason)
      }
    }
    guard tensor.dtype.isFloatingPoint else { return (false, "\(tensor.dtype.rawValue) tensor (not floating point)") }
    if let hit = targets.match(tensor, model: model) { return (true, "target '\(hit)' matched") }
    return (false, "matches no target (\(targets.described))")
  }

  func trace(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> Trace {
    var trace = Trace()
    var current = [Node(tensor: tensor, producer: -1)]
    var final: Set<String> = []  // quantized outputs: no later stage changes them
    for (s, stage) in stages.enumerated() {
      let (selected, why) = select(stage, tensor, usesDefaults: stage.base.usesDefaultSelection)
      guard selected else {
        trace.explanation.append("\(stage.label): not applied: \(why)")
        trace.keepReasons.append(why)
        continue
      }
      var line = "\(stage.label): \(why)"
      for (i, o) in stage.overrides.enumerated() {
        let at = o.recipe.line > 0 ? " (line \(o.recipe.line))" : ""
        if let hit = o.targets.match(tensor, model: model) {
          let change =
            o.recipe.skip
            ? "skip"
            : o.recipe.options.keys.sorted().map { "\($0)=\(Self.text(o.recipe.options[$0]!.value))" }.joined(
              separator: ", ")
          line += "; override \(i + 1)\(at) matched '\(hit)': \(change)"
        } else {
          line += "; override \(i + 1)\(at) did not match (targets \(o.targets.described))"
        }
      }
      let (key, skipped) = overrideKey(stage, tensor)
      if skipped {
        trace.explanation.append(line + " -> skipped by override")
        trace.keepReasons.append("skipped by an override of \(stage.label)")
        continue
      }
      guard let pass = stage.variants[key] else {
        throw .passBrokePlan(pass: Self.identifier, tensor: tensor.name, reason: "\(stage.label) was not prepared")
      }
      var next: [Node] = []
      var results: [String] = []
      for node in current {
        if final.contains(node.tensor.name) {
          next.append(node)
          continue
        }
        switch try pass.plan(node.tensor) {
        case .keep(let reason):
          next.append(node)
          results.append("keeps \(node.tensor.name): \(reason)")
          trace.keepReasons.append(reason)
        case .transform(let outputs, let note):
          let index = trace.steps.count
          trace.steps.append(Step(stage: s, pass: pass, input: node, outputs: outputs, note: note))
          next += outputs.map { Node(tensor: $0, producer: index) }
          if stage.recipe.kind == .quantize { final.formUnion(outputs.map(\.name)) }
          let shown = outputs.map { "\($0.name) \($0.dtype.rawValue)\($0.shape)" }.joined(separator: ", ")
          results.append("\(node.tensor.name) -> \(shown)\(note.map { " (\($0))" } ?? "")")
        }
      }
      trace.explanation.append(
        line + " -> " + (results.isEmpty ? "nothing left to change" : results.joined(separator: "; ")))
      current = next
    }
    trace.outputs = current
    return trace
  }

  static func text(_ value: RecipeValue) -> String {
    switch value {
    case .scalar(let s): s
    case .list(let l): "[" + l.joined(separator: ", ") + "]"
    }
  }

  /// For `--explain`: each stage, which target and overrides matched or not and why,
  /// and what the stage did.
  public func explanation(for tensor: TensorDescriptor) throws(SwiftCompressError) -> [String] {
    try trace(tensor).explanation
  }

  public var usesDefaultSelection: Bool { false }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    let trace = try trace(tensor)
    guard !trace.steps.isEmpty else {
      let reasons = trace.keepReasons.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
      return .keep(reason: reasons.isEmpty ? "no stage applies" : reasons.joined(separator: "; "))
    }
    let notes = trace.steps.map { step in
      "\(stages[step.stage].recipe.kind.rawValue)\(step.note.map { ": \($0)" } ?? "")"
    }
    return .transform(outputs: trace.outputs.map(\.tensor), note: notes.joined(separator: " -> "))
  }

  /// Bytes of one tensor during the chain.
  enum Stored {
    case input
    case bytes([UInt8])
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    let trace = try trace(input.descriptor)
    if trace.steps.count == 1 {
      // One stage: exactly the single-pass command.
      return try trace.steps[0].pass.transform(input, outputs: outputs)
    }
    var stored: [String: Stored] = [Self.key(Node(tensor: input.descriptor, producer: -1)): .input]
    var sparsity: SparsityInfo?
    var optimalError: Double?
    for (index, step) in trace.steps.enumerated() {
      let inputKey = Self.key(step.input)
      guard let source = stored.removeValue(forKey: inputKey) else {
        throw .passBrokePlan(pass: Self.identifier, tensor: step.input.tensor.name, reason: "stage input missing")
      }
      let produced: [Stored] = try withStored(source, input) { (raw) throws(SwiftCompressError) -> [Stored] in
        let stepInput = TensorInput(descriptor: step.input.tensor, bytes: raw) { input.companion(named: $0) }
        let result = try step.pass.transform(stepInput, outputs: step.outputs)
        guard result.outputs.count == step.outputs.count else {
          throw .passBrokePlan(
            pass: Self.identifier, tensor: step.input.tensor.name, reason: "a stage returned the wrong output count")
        }
        if let s = result.sparsity { sparsity = s }
        if let e = result.optimalError { optimalError = e }
        return result.outputs.map { data in
          switch data {
          case .input: source
          case .borrowed(let view): .bytes(Array(view))
          case .owned(let bytes): .bytes(bytes)
          }
        }
      }
      for (tensor, data) in zip(step.outputs, produced) {
        stored[Self.key(Node(tensor: tensor, producer: index))] = data
      }
    }
    var data: [OutputData] = []
    for node in trace.outputs {
      switch stored[Self.key(node)] {
      case .input: data.append(.input)
      case .bytes(let bytes): data.append(.owned(bytes))
      case nil:
        throw .passBrokePlan(pass: Self.identifier, tensor: node.tensor.name, reason: "output was not produced")
      }
    }
    // The error of the whole chain: the final outputs decoded back, against the input.
    let dense = try decode(Node(tensor: input.descriptor, producer: -1), trace: trace, stored: stored, input: input)
    var result = TransformResult(
      outputs: data, reconstruction: dense.count == input.elementCount ? .dense(dense) : .notApplicable,
      sparsity: sparsity)
    result.optimalError = optimalError
    return result
  }

  static func key(_ node: Node) -> String { "\(node.producer):\(node.tensor.name)" }

  private func withStored<R>(
    _ stored: Stored, _ input: TensorInput, _ body: (UnsafeRawBufferPointer) throws(SwiftCompressError) -> R
  ) throws(SwiftCompressError) -> R {
    switch stored {
    case .input: return try body(input.bytes)
    case .bytes(let bytes):
      return try withBuffers([bytes]) { (views) throws(SwiftCompressError) -> R in try body(views[0]) }
    }
  }

  /// The dense Float32 values a node stands for once every later stage is undone.
  private func decode(_ node: Node, trace: Trace, stored: [String: Stored], input: TensorInput)
    throws(SwiftCompressError) -> [Float]
  {
    guard let index = trace.steps.firstIndex(where: { $0.input == node }) else {
      // A final output: its bytes as written.
      let bytes: [UInt8]
      switch stored[Self.key(node)] {
      case .input: bytes = Array(input.bytes)
      case .bytes(let b): bytes = b
      case nil: throw .passBrokePlan(pass: Self.identifier, tensor: node.tensor.name, reason: "nothing to decode")
      }
      return bytes.withUnsafeBytes {
        Float32Conversion.floats($0, dtype: node.tensor.dtype, count: node.tensor.elementCount ?? 0)
      }
    }
    let step = trace.steps[index]
    let outputs = step.outputs.map { Node(tensor: $0, producer: index) }
    func finalBytes() throws(SwiftCompressError) -> [[UInt8]] {
      try outputs.map { (o) throws(SwiftCompressError) -> [UInt8] in
        switch stored[Self.key(o)] {
        case .bytes(let b): return b
        case .input: return Array(input.bytes)
        case nil: throw .passBrokePlan(pass: Self.identifier, tensor: o.tensor.name, reason: "output missing")
        }
      }
    }
    return try step.pass.reconstruct(
      step.input.tensor,
      from: ChainedOutputs(
        planned: step.outputs, bytes: finalBytes,
        dense: { (i) throws(SwiftCompressError) -> [Float] in
          try decode(outputs[i], trace: trace, stored: stored, input: input)
        }))
  }

  /// The pass of each stage that edits config.json: its variants (the one without
  /// overrides first) merged into one.
  private func editor(_ stage: Stage) -> any CompressionPass {
    let variants = stage.variants.keys.sorted().compactMap { stage.variants[$0] }
    guard let first = variants.first else { return stage.base }
    let merged = Self.merging(first, variants.dropFirst())
    // Config groups in the order of their modules in the checkpoint, as one pass writes them.
    guard var quantize = merged as? QuantizePass else { return merged }
    quantize.orderWritten(by: plannedNames)
    return quantize
  }

  private static func merging<P: CompressionPass>(_ first: P, _ others: ArraySlice<any CompressionPass>) -> P {
    others.reduce(first) { merged, other in (other as? P).map(merged.merged(with:)) ?? merged }
  }

  public func planned(transforming tensors: [TensorDescriptor]) -> RecipePass {
    // Which input tensors each stage variant changed (a stage may skip a tensor another changed).
    var changed: [[String: [TensorDescriptor]]] = Array(repeating: [:], count: stages.count)
    for tensor in tensors {
      guard let trace = try? trace(tensor) else { continue }
      for s in Set(trace.steps.map(\.stage)) {
        let (key, _) = overrideKey(stages[s], tensor)
        changed[s][key, default: []].append(tensor)
      }
    }
    var pass = self
    for s in pass.stages.indices {
      for (key, variant) in pass.stages[s].variants {
        pass.stages[s].variants[key] = variant.planned(transforming: changed[s][key] ?? [])
      }
    }
    pass.plannedNames = tensors.map(\.name)
    return pass
  }

  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    var current = config
    var edited: String?  // the last edit's text as its pass wrote it
    for stage in stages where !stage.variants.isEmpty {
      if let text = editor(stage).editedConfig(current, outputFloatDTypes: outputFloatDTypes),
        let parsed = try? JSONParser.parse(Array(text.utf8))
      {
        current = parsed
        edited = text
      }
    }
    return edited
  }

  /// The recipe with every stage's options spelled out, defaults included: what
  /// `swiftcompress run` writes into the output folder.
  public var effectiveRecipe: Recipe {
    var recipe = configuration
    for (i, stage) in stages.enumerated() {
      recipe.stages[i].options = stage.base.recipeStage?.recipeOptions ?? [:]
    }
    return recipe
  }

  public var outputMetadata: [String: String] {
    stages.filter { !$0.variants.isEmpty }.reduce(into: [:]) { metadata, stage in
      metadata.merge(editor(stage).outputMetadata) { _, new in new }
    }
  }

  /// Each stage's targets, excludes and overrides that match no tensor (an override: no
  /// tensor the stage takes), and its pass's own (ignore entries), with the recipe file
  /// and line.
  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] {
    let tensors = checkpoint.tensors.map { TensorDescriptor($0.info) }
    let file = configuration.file
    var warnings: [String] = []
    for stage in stages {
      let place = "\(file)\(stage.recipe.line > 0 ? ":\(stage.recipe.line)" : ""): \(stage.label)"
      let floats = tensors.filter(\.dtype.isFloatingPoint)
      for (key, list) in [("targets", stage.targets), ("exclude", stage.exclude)] {
        guard let list else { continue }
        let matched = Set(floats.flatMap { list.matches($0, model: model) })
        for entry in list.entries where !matched.contains(entry) {
          warnings.append("\(place): \(key) entry '\(entry)' matches no tensor of the input")
        }
      }
      let taken = tensors.filter { select(stage, $0, usesDefaults: stage.base.usesDefaultSelection).0 }
      for (i, o) in stage.overrides.enumerated()
      where !taken.contains(where: { o.targets.match($0, model: model) != nil }) {
        warnings.append(
          "\(file)\(o.recipe.line > 0 ? ":\(o.recipe.line)" : ""): \(stage.label): override \(i + 1) (targets \(o.targets.described)) matches no tensor the stage takes"
        )
      }
      guard let base = stage.base as? QuantizePass else {
        warnings += stage.base.selectionWarnings(for: checkpoint).map { "\(place): \($0)" }
        continue
      }
      warnings += base.unmatchedWarnings(checkpoint).map { "\(place): \($0)" }
      // Fused sets split between schemes: as the variants (scheme_for and overrides) write them.
      let variants = stage.variants.compactMapValues { $0 as? QuantizePass }
      guard
        variants.count > 1 || !base.configuration.schemeFor.isEmpty || stage.overrides.contains(where: \.recipe.skip)
      else { continue }
      warnings += QuantizePass.splitSets(checkpoint, model: model, by: "its scheme_for rules and overrides give") {
        tensor in
        // A weight the stage leaves out stays as it is: kept.
        let kept = LinearWeights.module(of: tensor.name).map { (module: $0, choice: SchemeChoice.keep) }
        // Factors of an earlier factorize stage are no part of a fused layer.
        if renamedBefore(stage.number - 1, tensor) { return nil }
        guard select(stage, tensor, usesDefaults: stage.base.usesDefaultSelection).0 else { return kept }
        let (key, skipped) = overrideKey(stage, tensor)
        return skipped ? kept : variants[key]?.quantizedModule(tensor)
      }.map { "\(place): \($0)" }
    }
    return warnings
  }

  /// Each stage's notes: its variants' (an allocation's summary) and those of what they
  /// write together (the loading note of a mix of schemes), once each.
  public var notes: [String] {
    var all: [String] = []
    for stage in stages where !stage.variants.isEmpty {
      let passes = [editor(stage)] + stage.variants.keys.sorted().map { stage.variants[$0]! }
      for note in passes.flatMap(\.notes).map({ "\(stage.label): \($0)" }) where !all.contains(note) {
        all.append(note)
      }
    }
    return all
  }

  public var warnings: [String] {
    var all: [String] = []
    for stage in stages {
      for key in stage.variants.keys.sorted() {
        for w in stage.variants[key]!.warnings where !all.contains(w) { all.append(w) }
      }
    }
    return all
  }
}

extension TensorSelection {
  /// No patterns: the default selection alone.
  static let defaultSelection: TensorSelection = {
    // Empty pattern lists always compile.
    guard let selection = try? TensorSelection() else { fatalError("an empty selection cannot fail") }
    return selection
  }()
}

extension RecipePass {
  /// For `--explain`: the recipe's own trace (`explanation(for:)`), each stage's
  /// targets and overrides; the run's selection has no patterns of its own.
  public func explanation(for tensor: TensorDescriptor, selection: TensorSelection) throws(SwiftCompressError)
    -> [String]
  {
    try explanation(for: tensor)
  }
}
