/// A piece of text on its way through the pipeline: unicode scalars, or an added token already matched.
struct Piece: Sendable {
  var scalars: [Unicode.Scalar]
  var tokenId: Int?
  /// Whether the piece starts at offset 0 of the original text (Metaspace's `prepend_scheme` "first").
  var startsAtOrigin: Bool
}

/// One entry of `added_tokens`.
struct AddedToken: Sendable {
  var id: Int
  var content: String
  var scalars: [Unicode.Scalar]
  var singleWord: Bool
  var lstrip: Bool
  var rstrip: Bool
  var normalized: Bool
  var special: Bool
}

/// The added tokens and how `tokenizers`' `AddedVocabulary` finds them in text: leftmost-longest matches,
/// discarded when `single_word` and inside a word, widened over whitespace by `lstrip` / `rstrip`.
struct AddedTokens: Sendable {
  let tokens: [AddedToken]
  let byId: [Int: AddedToken]
  let idByContent: Vocabulary
  /// The UTF-8 of the special tokens' contents (compared byte for byte, as the library does).
  let specialContents: Set<[UInt8]>
  /// Added tokens whose content is not a token of the model: they extend the vocabulary.
  let idsOutsideModel: Int
  /// For each first scalar, the tokens starting with it, longest first; one table per `normalized` value.
  private let rawIndex: [Unicode.Scalar: [AddedToken]]
  private let normalizedIndex: [Unicode.Scalar: [AddedToken]]

  init(_ tokens: [AddedToken], model: TokenizerModel) {
    self.tokens = tokens
    var byId: [Int: AddedToken] = [:]
    var idByContent = Vocabulary()
    var special: Set<[UInt8]> = []
    for token in tokens {
      byId[token.id] = token
      idByContent[token.content] = token.id
      if token.special { special.insert(Array(token.content.utf8)) }
    }
    self.byId = byId
    self.idByContent = idByContent
    specialContents = special
    idsOutsideModel =
      Set(tokens.map { Array($0.content.utf8) }).filter {
        model.id(of: String(decoding: $0, as: UTF8.self)) == nil
      }.count
    func index(_ normalized: Bool) -> [Unicode.Scalar: [AddedToken]] {
      var table: [Unicode.Scalar: [AddedToken]] = [:]
      // A token whose content appears twice keeps the last entry, as the library's map from content to id.
      for token in tokens where token.normalized == normalized && !token.scalars.isEmpty {
        if let same = table[token.scalars[0]]?.firstIndex(where: { $0.scalars == token.scalars }) {
          table[token.scalars[0]]!.remove(at: same)
        }
        table[token.scalars[0], default: []].append(token)
      }
      for key in table.keys { table[key]!.sort { $0.scalars.count > $1.scalars.count } }
      return table
    }
    rawIndex = index(false)
    normalizedIndex = index(true)
  }

  /// Splits `text` around the added tokens with `normalized == normalizedTokens`.
  func split(_ text: [Unicode.Scalar], normalizedTokens: Bool, startsAtOrigin: Bool) -> [Piece] {
    let index = normalizedTokens ? normalizedIndex : rawIndex
    if index.isEmpty || text.isEmpty {
      return text.isEmpty ? [] : [Piece(scalars: text, tokenId: nil, startsAtOrigin: startsAtOrigin)]
    }
    var pieces: [Piece] = []
    var startOffset = 0
    var position = 0
    let n = text.count
    while position < n {
      guard let candidates = index[text[position]],
        let token = candidates.first(where: { matches($0.scalars, text, at: position) })
      else {
        position += 1
        continue
      }
      var start = position
      var stop = position + token.scalars.count
      position = stop
      if token.singleWord {
        let startSpace = start == 0 || !isWordScalar(text[start - 1])
        let stopSpace = stop == n || !isWordScalar(text[stop])
        if !startSpace || !stopSpace { continue }
      }
      if token.lstrip {
        var newStart = start
        while newStart > 0 && text[newStart - 1].properties.isWhitespace { newStart -= 1 }
        start = max(newStart, startOffset)
      }
      if token.rstrip {
        while stop < n && text[stop].properties.isWhitespace { stop += 1 }
      }
      if startOffset < start {
        pieces.append(
          Piece(
            scalars: Array(text[startOffset..<start]), tokenId: nil, startsAtOrigin: startsAtOrigin && startOffset == 0)
        )
      }
      pieces.append(Piece(scalars: Array(text[start..<stop]), tokenId: token.id, startsAtOrigin: false))
      startOffset = stop
    }
    if startOffset < n {
      pieces.append(
        Piece(scalars: Array(text[startOffset...]), tokenId: nil, startsAtOrigin: startsAtOrigin && startOffset == 0))
    }
    return pieces
  }

  private func matches(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar], at position: Int) -> Bool {
    guard position + pattern.count <= text.count else { return false }
    for k in 0..<pattern.count where text[position + k] != pattern[k] { return false }
    return true
  }
}

/// The Rust `regex` crate's Unicode `\w`: alphabetic, marks, decimal digits, connector punctuation, joiners;
/// not the letters and digits of Unicode versions newer than its tables (the same ones Oniguruma lacks).
func isWordScalar(_ c: Unicode.Scalar) -> Bool {
  if c.value >= 0x80 && scalarClass(c) == .other && isAssignedAfterOniguruma(c) { return false }
  let p = c.properties
  if p.isAlphabetic || p.isJoinControl { return true }
  switch p.generalCategory {
  case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
  default: return false
  }
}
