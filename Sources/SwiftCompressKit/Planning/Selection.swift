import CheckpointIO

/// Which tensors a pass is offered.
///
/// Patterns are regular expressions searched anywhere in the tensor name (anchor
/// them with `^` and `$` to match whole names). A tensor is offered when:
/// - it matches no `exclude` pattern, and
/// - either it matches an `include` pattern (an explicit choice, which overrides the
///   defaults below), or no `include` patterns were given and the defaults allow it.
///
/// Defaults: tensors of rank 0 or 1 (norms, biases, scalars) and embedding tables
/// are left untouched, as are integer and boolean tensors (whatever the patterns). The
/// model adapter says which tensors are embeddings: the generic adapter's name rules
/// unless the selection is `adapted(to:)` a checkpoint's adapter.
// Regex is not marked Sendable, but these are immutable after init and matching does not
// mutate them, so sharing a selection across threads is safe.
public struct TensorSelection: @unchecked Sendable {
  public let include: [String]
  public let exclude: [String]
  private let includeRegexes: [Regex<AnyRegexOutput>]
  private let excludeRegexes: [Regex<AnyRegexOutput>]
  /// What the defaults ask which tensors are embedding tables.
  public private(set) var model: any ModelAdapter

  /// Compiles the patterns; a bad one throws naming the option.
  public init(include: [String] = [], exclude: [String] = [], model: any ModelAdapter = ModelAdapters.generic)
    throws(SwiftCompressError)
  {
    self.include = include
    self.exclude = exclude
    self.model = model
    includeRegexes = try include.map { (p) throws(SwiftCompressError) in
      try TensorSelection.compile(p, option: "--include")
    }
    excludeRegexes = try exclude.map { (p) throws(SwiftCompressError) in
      try TensorSelection.compile(p, option: "--exclude")
    }
  }

  private static func compile(_ pattern: String, option: String) throws(SwiftCompressError) -> Regex<AnyRegexOutput> {
    do {
      return try Regex(pattern)
    } catch {
      throw .invalidPattern(option: option, pattern: pattern, reason: "\(error)")
    }
  }

  /// The same selection, asking `model` which tensors are embeddings.
  public func adapted(to model: any ModelAdapter) -> TensorSelection {
    var selection = self
    selection.model = model
    return selection
  }

  /// Whether tensor `name` is an embedding table by the generic adapter's name rules (a
  /// module path component containing "embed", GPT-2's `wte` / `wpe`), for callers that
  /// have no checkpoint's adapter at hand.
  public static func isEmbedding(_ name: String) -> Bool {
    ModelAdapters.generic.isEmbedding(name)
  }

  /// A warning for each `--include` or `--exclude` pattern that matches none of `names`.
  public func unmatchedPatterns(in names: [String]) -> [String] {
    var warnings: [String] = []
    for (option, patterns, regexes) in [("--include", include, includeRegexes), ("--exclude", exclude, excludeRegexes)]
    {
      for (pattern, regex) in zip(patterns, regexes) where !names.contains(where: { $0.contains(regex) }) {
        warnings.append("\(option) '\(pattern)' matches no tensor of the input")
      }
    }
    return warnings
  }

  /// Whether `tensor` is offered to the pass, and if not, why. Without `defaults`,
  /// only the patterns apply.
  public func decide(_ tensor: TensorDescriptor, defaults: Bool = true) -> SelectionDecision {
    let name = tensor.name
    if let index = excludeRegexes.firstIndex(where: { name.contains($0) }) {
      return .skipped(reason: "matches --exclude '\(exclude[index])'")
    }
    if !defaults {
      if includeRegexes.isEmpty || includeRegexes.contains(where: { name.contains($0) }) { return .selected }
      return .skipped(reason: "matches no --include pattern")
    }
    guard tensor.dtype.isFloatingPoint else {
      return .skipped(reason: "\(tensor.dtype.rawValue) tensor (not floating point)")
    }
    if !includeRegexes.isEmpty {
      if includeRegexes.contains(where: { name.contains($0) }) { return .selected }
      return .skipped(reason: "matches no --include pattern")
    }
    if tensor.shape.count <= 1 {
      return .skipped(reason: "\(tensor.shape.count)-D tensor (norm, bias or scalar) left untouched by default")
    }
    if model.isEmbedding(name) {
      return .skipped(reason: "embedding table left untouched by default")
    }
    return .selected
  }
}

public enum SelectionDecision: Sendable, Equatable {
  case selected
  case skipped(reason: String)
}
