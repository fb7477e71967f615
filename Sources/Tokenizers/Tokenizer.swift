import Foundation

/// A tokenizer read from a Hugging Face `tokenizer.json`, encoding text into the same ids as the Rust
/// `tokenizers` library. (API contract; the implementation lands with the tokenizers work.)
public final class Tokenizer: Sendable {
  /// Reads `tokenizer.json` at `path`.
  public init(contentsOf path: String) throws(TokenizerError) {
    throw .unsupported(path: path, reason: "tokenizers are not implemented yet")
  }

  /// The ids of `text`, with the post-processor's special tokens when `addSpecialTokens`, truncated to
  /// `maxLength` tokens (special tokens included) as `tokenizers`' `enable_truncation` does.
  public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil) -> [Int] { [] }

  /// The text of `ids`.
  public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String { "" }

  /// The number of ids: the model's vocabulary and the added tokens.
  public var vocabularySize: Int { 0 }

  /// The id of token `token` (vocabulary or added), nil when absent.
  public func id(of token: String) -> Int? { nil }
}

/// Errors of reading a tokenizer.
public enum TokenizerError: Error, Equatable, LocalizedError {
  /// The file cannot be read or is not JSON.
  case unreadable(path: String, reason: String)
  /// A model, normalizer, pre-tokenizer, post-processor or decoder this library does not implement.
  case unsupported(path: String, reason: String)
  /// The file is JSON but not a valid tokenizer.
  case invalid(path: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .unreadable(let path, let reason): "tokenizer '\(path)': cannot be read: \(reason)."
    case .unsupported(let path, let reason): "tokenizer '\(path)': \(reason)."
    case .invalid(let path, let reason): "tokenizer '\(path)': \(reason)."
    }
  }
}
