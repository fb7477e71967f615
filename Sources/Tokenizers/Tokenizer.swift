import CheckpointIO
import Foundation

/// A tokenizer read from a Hugging Face `tokenizer.json`, encoding text into the same ids as the Rust
/// `tokenizers` library.
///
/// The pipeline mirrors the library's: added tokens are matched first (the ones with `normalized` false on
/// the raw text, the others on the normalized text), each remaining piece is normalized, pre-tokenized and
/// given to the model (BPE or WordPiece), then the post-processor adds its special tokens. docs/tokenizers.md
/// lists the supported components; any other component is refused with `TokenizerError.unsupported`.
public final class Tokenizer: Sendable {
  let addedTokens: AddedTokens
  let normalizer: Normalizer?
  let preTokenizer: PreTokenizer?
  let model: TokenizerModel
  let postProcessor: PostProcessor?
  let decoder: TokenDecoder?
  /// `truncation.max_length` of the file, used when `encode` is given no `maxLength`.
  let fileMaxLength: Int?

  /// The model kind and its main options, e.g. "BPE (byte-level)", "WordPiece".
  public let kind: String

  /// Reads `tokenizer.json` at `path`.
  public convenience init(contentsOf path: String) throws(TokenizerError) {
    guard let data = FileManager.default.contents(atPath: path) else {
      let reason =
        FileManager.default.fileExists(atPath: path)
        ? "the file exists but could not be read; check its permissions"
        : "no such file; pass the path of a tokenizer.json"
      throw .unreadable(path: path, reason: reason)
    }
    try self.init(json: [UInt8](data), path: path)
  }

  /// Parses the bytes of a `tokenizer.json`; `path` is only used in error messages.
  public init(json: [UInt8], path: String) throws(TokenizerError) {
    let root: JSONValue
    do {
      root = try JSONParser.parse(json)
    } catch {
      throw .unreadable(path: path, reason: "not valid JSON (\(error)); pass a tokenizer.json")
    }
    guard root.members != nil else {
      throw .invalid(path: path, reason: "the top level is \(root.kindName), not an object")
    }
    let context = ParseContext(path: path)
    guard let modelValue = root["model"], modelValue != .null else {
      throw .invalid(path: path, reason: "no \"model\"; a tokenizer.json must have one")
    }
    model = try context.model(modelValue)
    addedTokens = try context.addedTokens(root["added_tokens"], model: model)
    normalizer = try context.normalizer(root["normalizer"])
    preTokenizer = try context.preTokenizer(root["pre_tokenizer"])
    postProcessor = try context.postProcessor(root["post_processor"], addedTokens: addedTokens, model: model)
    decoder = try context.decoder(root["decoder"])
    fileMaxLength = try context.truncation(root["truncation"])
    kind = model.kind
  }

  /// The ids of `text`, with the post-processor's special tokens when `addSpecialTokens`, truncated to
  /// `maxLength` tokens (special tokens included) as `tokenizers`' `enable_truncation` does: the text's ids are
  /// cut on the right to `maxLength` minus the number of special tokens, then the special tokens are added.
  /// With no `maxLength`, the file's own `truncation.max_length` applies when it has one. As in the library, a
  /// `maxLength` smaller than the number of special tokens truncates nothing.
  public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil) -> [Int] {
    var ids = encodeWithoutPostProcessing(text)
    if let maxLength = maxLength ?? fileMaxLength {
      let added = addSpecialTokens ? (postProcessor?.addedTokenCount ?? 0) : 0
      // The library computes `max_length - added` in wrapping unsigned arithmetic: below the number of special
      // tokens, nothing is truncated (measured with tokenizers 0.23.3).
      if added <= maxLength {
        let keep = maxLength - added
        if ids.count > keep { ids.removeLast(ids.count - keep) }
      }
    }
    if addSpecialTokens, let postProcessor {
      ids = postProcessor.process(ids)
    }
    return ids
  }

  /// The ids of `text` before the post-processor: added tokens, then the model's tokens of every other piece.
  func encodeWithoutPostProcessing(_ text: String) -> [Int] {
    var ids: [Int] = []
    let scalars = Array(text.unicodeScalars)
    for rawPiece in addedTokens.split(scalars, normalizedTokens: false, startsAtOrigin: true) {
      if let id = rawPiece.tokenId {
        ids.append(id)
        continue
      }
      var normalized = rawPiece
      if let normalizer { normalized.scalars = normalizer.normalize(normalized.scalars) }
      for piece in addedTokens.split(
        normalized.scalars, normalizedTokens: true, startsAtOrigin: rawPiece.startsAtOrigin)
      {
        if let id = piece.tokenId {
          ids.append(id)
          continue
        }
        let words = preTokenizer?.preTokenize([piece]) ?? [piece]
        for word in words where !word.scalars.isEmpty {
          model.tokenize(word.scalars, into: &ids)
        }
      }
    }
    return ids
  }

  /// The text of `ids`: each id's token (added or vocabulary; unknown ids are skipped, special tokens too when
  /// `skipSpecialTokens`) through the decoder, or joined with spaces when the file has no decoder.
  public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
    var tokens: [String] = []
    tokens.reserveCapacity(ids.count)
    for id in ids {
      if let added = addedTokens.byId[id] {
        if skipSpecialTokens && added.special { continue }
        tokens.append(added.content)
      } else if let token = model.token(of: id) {
        if skipSpecialTokens && addedTokens.specialContents.contains(Array(token.utf8)) { continue }
        tokens.append(token)
      }
    }
    guard let decoder else { return tokens.joined(separator: " ") }
    return decoder.decode(tokens).joined()
  }

  /// The number of ids: the model's vocabulary and the added tokens that are not in it.
  public var vocabularySize: Int { model.vocabularySize + addedTokens.idsOutsideModel }

  /// The id of token `token` (vocabulary or added), nil when absent.
  public func id(of token: String) -> Int? {
    addedTokens.idByContent[token] ?? model.id(of: token)
  }

  /// The token of `id` (added or vocabulary), nil when absent.
  public func token(of id: Int) -> String? {
    addedTokens.byId[id]?.content ?? model.token(of: id)
  }

  /// The ids the post-processor puts before the text (e.g. `<|begin_of_text|>`, `[CLS]`); empty without one.
  public var prefixTokenIds: [Int] { postProcessor?.prefixIds ?? [] }

  /// The ids the post-processor puts after the text (e.g. `[SEP]`); empty without one.
  public var suffixTokenIds: [Int] { postProcessor?.suffixIds ?? [] }

  /// The id of the post-processor's first leading special token, the usual beginning-of-sequence token.
  public var bosTokenId: Int? { prefixTokenIds.first }

  /// Whether `id` is a special added token.
  public func isSpecial(_ id: Int) -> Bool { addedTokens.byId[id]?.special ?? false }
}

/// Errors of reading a tokenizer.
public enum TokenizerError: Error, Equatable, LocalizedError {
  /// The file cannot be read or is not JSON.
  case unreadable(path: String, reason: String)
  /// A model, normalizer, pre-tokenizer, post-processor or decoder this library does not implement.
  case unsupported(path: String, reason: String)
  /// The file is JSON but not a valid tokenizer.
  case invalid(path: String, reason: String)

  /// What is wrong, without the path or a final period (for messages that name the file).
  public var reason: String {
    let text =
      switch self {
      case .unreadable(_, let reason): "cannot be read: \(reason)"
      case .unsupported(_, let reason), .invalid(_, let reason): reason
      }
    var trimmed = Substring(text)
    while trimmed.last == "." || trimmed.last == " " { trimmed = trimmed.dropLast() }
    return String(trimmed)
  }

  public var errorDescription: String? {
    switch self {
    case .unreadable(let path, let reason): "tokenizer '\(path)': cannot be read: \(reason)."
    case .unsupported(let path, let reason): "tokenizer '\(path)': \(reason)."
    case .invalid(let path, let reason): "tokenizer '\(path)': \(reason)."
    }
  }
}
