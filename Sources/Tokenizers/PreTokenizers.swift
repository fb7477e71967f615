/// A `pre_tokenizer` of tokenizer.json: splits pieces into the words the model sees.
protocol PreTokenizer: Sendable {
  func preTokenize(_ pieces: [Piece]) -> [Piece]
}

/// `tokenizers`' `SplitDelimiterBehavior`.
enum SplitBehavior: String, Sendable {
  case removed = "Removed"
  case isolated = "Isolated"
  case mergedWithPrevious = "MergedWithPrevious"
  case mergedWithNext = "MergedWithNext"
  case contiguous = "Contiguous"
}

/// Splits `piece` at `matches` as `NormalizedString::split` does; empty pieces are dropped.
func splitPiece(_ piece: Piece, matches: [Range<Int>], behavior: SplitBehavior, invert: Bool = false) -> [Piece] {
  let text = piece.scalars
  // Every scalar in exactly one span, each span flagged as a match or not.
  var spans: [(range: Range<Int>, isMatch: Bool)] = []
  spans.reserveCapacity(matches.count * 2 + 1)
  var previous = 0
  for m in matches {
    if previous < m.lowerBound { spans.append((previous..<m.lowerBound, false)) }
    spans.append((m, true))
    previous = m.upperBound
  }
  if previous < text.count { spans.append((previous..<text.count, false)) }
  if invert { spans = spans.map { ($0.range, !$0.isMatch) } }

  var kept: [(range: Range<Int>, remove: Bool)] = []
  switch behavior {
  case .isolated:
    kept = spans.map { ($0.range, false) }
  case .removed:
    kept = spans.map { ($0.range, $0.isMatch) }
  case .contiguous:
    var previousMatch = false
    for span in spans {
      if span.isMatch == previousMatch, let last = kept.last {
        kept[kept.count - 1] = (last.range.lowerBound..<span.range.upperBound, false)
      } else {
        kept.append((span.range, false))
      }
      previousMatch = span.isMatch
    }
  case .mergedWithPrevious:
    var previousMatch = false
    for span in spans {
      if span.isMatch && !previousMatch, let last = kept.last {
        kept[kept.count - 1] = (last.range.lowerBound..<span.range.upperBound, false)
      } else {
        kept.append((span.range, false))
      }
      previousMatch = span.isMatch
    }
  case .mergedWithNext:
    var previousMatch = false
    for span in spans.reversed() {
      if span.isMatch && !previousMatch, let last = kept.last {
        kept[kept.count - 1] = (span.range.lowerBound..<last.range.upperBound, false)
      } else {
        kept.append((span.range, false))
      }
      previousMatch = span.isMatch
    }
    kept.reverse()
  }
  return kept.compactMap { span in
    guard !span.remove, !span.range.isEmpty else { return nil }
    return Piece(
      scalars: Array(text[span.range]), tokenId: nil,
      startsAtOrigin: piece.startsAtOrigin && span.range.lowerBound == 0)
  }
}

/// `Split`: a regex or literal pattern with a delimiter behavior.
struct SplitPreTokenizer: PreTokenizer {
  let regex: SplitRegex
  let behavior: SplitBehavior
  let invert: Bool

  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    pieces.flatMap { splitPiece($0, matches: regex.matches($0.scalars), behavior: behavior, invert: invert) }
  }
}

/// GPT-2's map from bytes to printable scalars: printable Latin-1 bytes map to themselves, the others to
/// U+0100 onwards in byte order.
let byteToScalar: [Unicode.Scalar] = {
  var table = [Unicode.Scalar](repeating: " ", count: 256)
  var extra: UInt32 = 256
  for b in 0..<256 {
    if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
      table[b] = Unicode.Scalar(UInt32(b))!
    } else {
      table[b] = Unicode.Scalar(extra)!
      extra += 1
    }
  }
  return table
}()

/// The inverse of `byteToScalar`.
let scalarToByte: [UInt32: UInt8] = {
  var table: [UInt32: UInt8] = [:]
  for (b, c) in byteToScalar.enumerated() { table[c.value] = UInt8(b) }
  return table
}()

/// `ByteLevel`: an optional leading space, the GPT-2 split when `use_regex`, then every UTF-8 byte as
/// its printable scalar.
struct ByteLevelPreTokenizer: PreTokenizer {
  let addPrefixSpace: Bool
  let useRegex: Bool

  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    var out: [Piece] = []
    out.reserveCapacity(pieces.count)
    for var piece in pieces {
      if addPrefixSpace && piece.scalars.first != " " { piece.scalars.insert(" ", at: 0) }
      let words =
        useRegex ? splitPiece(piece, matches: SplitRegex.gpt2.matches(piece.scalars), behavior: .isolated) : [piece]
      for var word in words {
        var mapped: [Unicode.Scalar] = []
        mapped.reserveCapacity(word.scalars.count * 2)
        for c in word.scalars {
          if c.value < 0x80 {
            mapped.append(byteToScalar[Int(c.value)])
          } else {
            for b in String(Character(c)).utf8 { mapped.append(byteToScalar[Int(b)]) }
          }
        }
        word.scalars = mapped
        out.append(word)
      }
    }
    return out
  }
}

/// `Metaspace`: spaces become the replacement (▁), which is prepended per `prepend_scheme`; with `split`, the
/// piece is cut before every replacement.
struct MetaspacePreTokenizer: PreTokenizer {
  enum PrependScheme: String, Sendable { case always, first, never }
  let replacement: Unicode.Scalar
  let prependScheme: PrependScheme
  let split: Bool

  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    var out: [Piece] = []
    for var piece in pieces {
      piece.scalars = piece.scalars.map { $0 == " " ? replacement : $0 }
      let prepend: Bool =
        switch prependScheme {
        case .always: piece.scalars.first != replacement
        case .first: piece.scalars.first != replacement && piece.startsAtOrigin
        case .never: false
        }
      if prepend { piece.scalars.insert(replacement, at: 0) }
      if split {
        let matches = piece.scalars.indices.filter { piece.scalars[$0] == replacement }.map { $0..<($0 + 1) }
        out += splitPiece(piece, matches: matches, behavior: .mergedWithNext)
      } else {
        out.append(piece)
      }
    }
    return out
  }
}

/// `BertPreTokenizer`: whitespace removed, then every punctuation scalar on its own.
struct BertPreTokenizer: PreTokenizer {
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    var out: [Piece] = []
    for piece in pieces {
      let spaces = piece.scalars.indices.filter { piece.scalars[$0].properties.isWhitespace }.map { $0..<($0 + 1) }
      for word in splitPiece(piece, matches: spaces, behavior: .removed) {
        let marks = word.scalars.indices.filter { isBertPunctuation(word.scalars[$0]) }.map { $0..<($0 + 1) }
        out += splitPiece(word, matches: marks, behavior: .isolated)
      }
    }
    return out
  }
}

/// ASCII punctuation (symbols included, as Rust's `is_ascii_punctuation`) or a Unicode punctuation category.
func isBertPunctuation(_ c: Unicode.Scalar) -> Bool {
  let v = c.value
  if v < 0x80 {
    return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v)
      || (0x7B...0x7E).contains(v)
  }
  switch c.properties.generalCategory {
  case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
    .finalPunctuation, .otherPunctuation:
    return true
  default: return false
  }
}

/// `WhitespaceSplit`: split on whitespace, which is removed.
struct WhitespaceSplitPreTokenizer: PreTokenizer {
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    pieces.flatMap { piece in
      let spaces = piece.scalars.indices.filter { piece.scalars[$0].properties.isWhitespace }.map { $0..<($0 + 1) }
      return splitPiece(piece, matches: spaces, behavior: .removed)
    }
  }
}

/// `Whitespace`: the matches of Rust regex `\w+|[^\w\s]+` are kept, the rest (whitespace) removed.
struct WhitespacePreTokenizer: PreTokenizer {
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    pieces.flatMap { piece in
      let text = piece.scalars
      var matches: [Range<Int>] = []
      var i = 0
      while i < text.count {
        let word = isWordScalar(text[i])
        if !word && text[i].properties.isWhitespace {
          i += 1
          continue
        }
        var j = i + 1
        while j < text.count && isWordScalar(text[j]) == word && (word || !text[j].properties.isWhitespace) { j += 1 }
        matches.append(i..<j)
        i = j
      }
      return splitPiece(piece, matches: matches, behavior: .removed, invert: true)
    }
  }
}

/// `Digits`: numeric scalars (categories Nd, Nl, No) each on their own (`individual_digits`) or in runs.
struct DigitsPreTokenizer: PreTokenizer {
  let individualDigits: Bool
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    pieces.flatMap { piece in
      let digits = piece.scalars.indices.filter { isNumeric(piece.scalars[$0]) }.map { $0..<($0 + 1) }
      return splitPiece(piece, matches: digits, behavior: individualDigits ? .isolated : .contiguous)
    }
  }
}

func isNumeric(_ c: Unicode.Scalar) -> Bool {
  switch c.properties.generalCategory {
  case .decimalNumber, .letterNumber, .otherNumber: return true
  default: return false
  }
}

/// `Punctuation`: punctuation scalars (as BERT's) split off with the given behavior.
struct PunctuationPreTokenizer: PreTokenizer {
  let behavior: SplitBehavior
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    pieces.flatMap { piece in
      let marks = piece.scalars.indices.filter { isBertPunctuation(piece.scalars[$0]) }.map { $0..<($0 + 1) }
      return splitPiece(piece, matches: marks, behavior: behavior)
    }
  }
}

/// `Sequence` of pre-tokenizers, applied in order.
struct SequencePreTokenizer: PreTokenizer {
  let preTokenizers: [PreTokenizer]
  func preTokenize(_ pieces: [Piece]) -> [Piece] {
    preTokenizers.reduce(pieces) { $1.preTokenize($0) }
  }
}
