import CheckpointIO
import Foundation

/// The selection quantize and prune share: 2-D float `.weight` tensors of linear layers,
/// not embeddings, not in the ignore list.
enum LinearWeights {
  enum Selection {
    case module(String)
    case keep(String)
  }

  /// The module a `.weight` tensor belongs to.
  static func module(of name: String) -> String? {
    name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : nil
  }

  /// The module of `tensor` when it is a selected linear weight, or why it is kept.
  /// Throws for a linear weight whose dtype cannot be processed.
  /// With `factors`, factorize's `<module>.weight_a` and `.weight_b` count as linear
  /// weights of `<module>` too (quantize can store them). `model` says which tensors are
  /// embeddings.
  static func select(
    _ tensor: TensorDescriptor, ignoring rules: [IgnoreRule], verb: String, factors: Bool = false,
    model: any ModelAdapter = ModelAdapters.generic
  ) throws(SwiftCompressError) -> Selection {
    let factor = factors ? [".weight_a", ".weight_b"].first { tensor.name.hasSuffix($0) } : nil
    guard let module = module(of: tensor.name) ?? factor.map({ String(tensor.name.dropLast($0.count)) })
    else { return .keep("not a .weight tensor") }
    if let rule = rules.first(where: { $0.matches(module) }) { return .keep("ignored by '\(rule.entry)'") }
    if model.isEmbedding(tensor.name) { return .keep("embedding table (not a linear layer)") }
    guard tensor.shape.count == 2 else {
      return .keep("\(tensor.shape.count)-D tensor (only 2-D linear weights are \(verb))")
    }
    guard tensor.shape[0] > 0, tensor.shape[1] > 0 else {
      return .keep("shape [\(tensor.shape[0]), \(tensor.shape[1])] has no elements (nothing to be \(verb))")
    }
    guard [.f32, .bf16, .f16].contains(tensor.dtype) else {
      throw .invalidTensor(
        name: tensor.name,
        reason: "\(tensor.dtype.rawValue) weights cannot be \(verb); convert the checkpoint to F32, BF16 or F16 first")
    }
    return .module(module)
  }
}

/// One entry of compressed-tensors' `ignore` list: an exact module name, or `re:` and a
/// regular expression matched from the start of the module name (Python's `re.match`).
struct IgnoreRule: @unchecked Sendable {  // Regex is immutable after init
  let entry: String
  private let regex: Regex<AnyRegexOutput>?

  init(_ entry: String) throws(SwiftCompressError) {
    self.entry = entry
    if entry.hasPrefix("re:") {
      do {
        regex = try Regex(String(entry.dropFirst(3)))
      } catch {
        throw .invalidPattern(option: "--ignore", pattern: entry, reason: "\(error)")
      }
    } else {
      regex = nil
    }
  }

  func matches(_ module: String) -> Bool {
    guard let regex else { return module == entry }
    return (try? regex.prefixMatch(in: module)) != nil
  }

  /// A warning for each of `rules` that matches no module of `checkpoint` (the module of
  /// a tensor is its name without the last component). The default entry `lm_head` is
  /// not reported: many models (encoders, tied embeddings) have none.
  static func unmatched(_ rules: [IgnoreRule], in checkpoint: Checkpoint) -> [String] {
    let modules = Set(
      checkpoint.tensors.map { name in
        name.name.split(separator: ".", omittingEmptySubsequences: false).dropLast().joined(separator: ".")
      })
    return rules.filter { rule in rule.entry != "lm_head" && !modules.contains(where: rule.matches) }.map {
      "ignore entry '\($0.entry)' matches no module of the input"
    }
  }
}
