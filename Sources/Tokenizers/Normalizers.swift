import Foundation

/// A `normalizer` of tokenizer.json: a function of the text of one piece.
protocol Normalizer: Sendable {
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar]
}

/// Unicode normalization forms, through Foundation.
struct UnicodeNormalizer: Normalizer {
  enum Form: Sendable { case nfc, nfd, nfkc, nfkd }
  let form: Form

  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    return unicodeNormalized(text, form)
  }
}

func unicodeNormalized(_ text: [Unicode.Scalar], _ form: UnicodeNormalizer.Form) -> [Unicode.Scalar] {
  // Below these scalars every form is the identity: no canonical decomposition starts before U+00C0, no
  // compatibility one before U+00A0, and composition needs a scalar from U+0300 on.
  let unchangedBelow: UInt32 =
    switch form {
    case .nfc: 0x300
    case .nfd: 0xC0
    case .nfkc, .nfkd: 0xA0
    }
  if text.allSatisfy({ $0.value < unchangedBelow }) { return text }
  var view = String.UnicodeScalarView()
  view.append(contentsOf: text)
  let string = String(view)
  let result: String =
    switch form {
    case .nfc: string.precomposedStringWithCanonicalMapping
    case .nfd: string.decomposedStringWithCanonicalMapping
    case .nfkc: string.precomposedStringWithCompatibilityMapping
    case .nfkd: string.decomposedStringWithCompatibilityMapping
    }
  return Array(result.unicodeScalars)
}

/// `Lowercase`: each scalar's full lowercase mapping, without context (as Rust's `char::to_lowercase`).
struct LowercaseNormalizer: Normalizer {
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] { lowercased(text) }
}

func lowercased(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
  var out: [Unicode.Scalar] = []
  out.reserveCapacity(text.count)
  for c in text {
    if c.value < 0x80 {
      out.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32)! : c)
    } else {
      out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
    }
  }
  return out
}

/// `Prepend`: the string before any non-empty text.
struct PrependNormalizer: Normalizer {
  let prefix: [Unicode.Scalar]
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] { text.isEmpty ? text : prefix + text }
}

/// `Replace` with a literal pattern: every non-overlapping occurrence, left to right.
struct ReplaceNormalizer: Normalizer {
  let pattern: [Unicode.Scalar]
  let content: [Unicode.Scalar]
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] { replacingOccurrences(text, pattern, content) }
}

func replacingOccurrences(
  _ text: [Unicode.Scalar], _ pattern: [Unicode.Scalar], _ content: [Unicode.Scalar]
) -> [Unicode.Scalar] {
  guard !pattern.isEmpty, text.count >= pattern.count else { return text }
  var out: [Unicode.Scalar] = []
  out.reserveCapacity(text.count)
  var i = 0
  while i < text.count {
    if text[i] == pattern[0] && i + pattern.count <= text.count
      && (pattern.count == 1 || text[i..<(i + pattern.count)].elementsEqual(pattern))
    {
      out.append(contentsOf: content)
      i += pattern.count
    } else {
      out.append(text[i])
      i += 1
    }
  }
  return out
}

/// `Replace` with a regex pattern, through ICU (NSRegularExpression).
struct RegexReplaceNormalizer: Normalizer {
  let regex: SplitRegex
  let content: [Unicode.Scalar]
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    var previous = 0
    for match in regex.matches(text) {
      out.append(contentsOf: text[previous..<match.lowerBound])
      out.append(contentsOf: content)
      previous = match.upperBound
    }
    out.append(contentsOf: text[previous...])
    return out
  }
}

/// `Strip`: whitespace removed on the left and/or right.
struct StripNormalizer: Normalizer {
  let left: Bool
  let right: Bool
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var lower = 0
    var upper = text.count
    if left { while lower < upper && text[lower].properties.isWhitespace { lower += 1 } }
    if right { while upper > lower && text[upper - 1].properties.isWhitespace { upper -= 1 } }
    return Array(text[lower..<upper])
  }
}

/// `StripAccents`: nonspacing marks removed (the text is expected in NFD already).
struct StripAccentsNormalizer: Normalizer {
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    text.filter { $0.properties.generalCategory != .nonspacingMark }
  }
}

/// `BertNormalizer`: control characters removed and whitespace made spaces (`clean_text`), spaces around CJK
/// ideographs (`handle_chinese_chars`), accents stripped after NFD (`strip_accents`, which follows `lowercase`
/// when null), lowercase.
struct BertNormalizer: Normalizer {
  let cleanText: Bool
  let handleChineseChars: Bool
  let stripAccents: Bool
  let lowercase: Bool

  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(text.count + 8)
    for c in text {
      if cleanText {
        if c.value == 0 || c.value == 0xFFFD || isBertControl(c) { continue }
        if c == "\t" || c == "\n" || c == "\r" || c.properties.isWhitespace {
          out.append(" ")
          continue
        }
      }
      if handleChineseChars && isChineseChar(c) {
        out.append(" ")
        out.append(c)
        out.append(" ")
      } else {
        out.append(c)
      }
    }
    if stripAccents {
      out = unicodeNormalized(out, .nfd).filter { $0.properties.generalCategory != .nonspacingMark }
    }
    if lowercase { out = lowercased(out) }
    return out
  }
}

/// BERT's control characters: categories Cc, Cf, Co, Cs except tab, newline and carriage return. Unassigned
/// scalars (Cn) are kept, as the library keeps them (measured: U+0378, U+2065, U+FFFF stay).
func isBertControl(_ c: Unicode.Scalar) -> Bool {
  if c == "\t" || c == "\n" || c == "\r" { return false }
  switch c.properties.generalCategory {
  case .control, .format, .privateUse, .surrogate: return true
  default: return false
  }
}

/// The CJK ideograph blocks BERT puts spaces around.
func isChineseChar(_ c: Unicode.Scalar) -> Bool {
  switch c.value {
  case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
    0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
    return true
  default: return false
  }
}

/// `Sequence` of normalizers, applied in order.
struct SequenceNormalizer: Normalizer {
  let normalizers: [Normalizer]
  func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    normalizers.reduce(text) { $1.normalize($0) }
  }
}
