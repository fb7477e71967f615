/// The `post_processor` of tokenizer.json, for single sequences: special ids before and after the text.
struct PostProcessor: Sendable {
  let prefixIds: [Int]
  let suffixIds: [Int]
  var addedTokenCount: Int { prefixIds.count + suffixIds.count }

  func process(_ ids: [Int]) -> [Int] { prefixIds + ids + suffixIds }

  /// `Sequence`: each processor wraps the result of the previous one.
  static func sequence(_ processors: [PostProcessor]) -> PostProcessor {
    var prefix: [Int] = []
    var suffix: [Int] = []
    for p in processors {
      prefix = p.prefixIds + prefix
      suffix += p.suffixIds
    }
    return PostProcessor(prefixIds: prefix, suffixIds: suffix)
  }
}

/// A `decoder` of tokenizer.json: `decode_chain` over the tokens; the results are concatenated.
protocol TokenDecoder: Sendable {
  func decode(_ tokens: [String]) -> [String]
}

/// `ByteLevel`: every scalar back to its byte (a token with a scalar outside the table keeps its UTF-8), the
/// bytes of all tokens decoded as UTF-8 with replacement characters.
struct ByteLevelDecoder: TokenDecoder {
  func decode(_ tokens: [String]) -> [String] {
    var bytes: [UInt8] = []
    for token in tokens {
      var mapped: [UInt8] = []
      var ok = true
      for c in token.unicodeScalars {
        guard let b = scalarToByte[c.value] else {
          ok = false
          break
        }
        mapped.append(b)
      }
      bytes += ok ? mapped : Array(token.utf8)
    }
    return [String(decoding: bytes, as: UTF8.self)]
  }
}

/// `WordPiece`: the prefix removed from continuations, a space before other tokens, and with `cleanup` the
/// spaces before punctuation and contractions removed.
struct WordPieceDecoder: TokenDecoder {
  let prefix: String
  let cleanup: Bool

  func decode(_ tokens: [String]) -> [String] {
    tokens.enumerated().map { i, token in
      var t = token
      if i != 0 {
        // Byte-wise: "##" then a combining mark is one Character, so String.hasPrefix would say no.
        if t.utf8.starts(with: prefix.utf8) {
          t = String(decoding: t.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
        } else {
          t = " " + t
        }
      }
      return cleanup ? cleanedUp(t) : t
    }
  }
}

func cleanedUp(_ text: String) -> String {
  var s = text
  for (a, b) in [
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
    (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
  ] {
    s = string(replacingOccurrences(Array(s.unicodeScalars), Array(a.unicodeScalars), Array(b.unicodeScalars)))
  }
  return s
}

/// `Replace` with a literal pattern, in every token.
struct ReplaceDecoder: TokenDecoder {
  let pattern: [Unicode.Scalar]
  let content: [Unicode.Scalar]
  func decode(_ tokens: [String]) -> [String] {
    tokens.map { string(replacingOccurrences(Array($0.unicodeScalars), pattern, content)) }
  }
}

/// `ByteFallback`: runs of `<0xAB>` tokens become their bytes as UTF-8, or one U+FFFD per byte when invalid.
struct ByteFallbackDecoder: TokenDecoder {
  func decode(_ tokens: [String]) -> [String] {
    var out: [String] = []
    var pending: [UInt8] = []
    func flush() {
      guard !pending.isEmpty else { return }
      if let s = String(validating: pending, as: UTF8.self) {
        out.append(s)
      } else {
        out += Array(repeating: "\u{FFFD}", count: pending.count)
      }
      pending.removeAll()
    }
    for token in tokens {
      let u = Array(token.utf8)
      if u.count == 6 && u[0] == UInt8(ascii: "<") && u[1] == UInt8(ascii: "0") && u[2] == UInt8(ascii: "x")
        && u[5] == UInt8(ascii: ">"),
        let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
      {
        pending.append(b)
      } else {
        flush()
        out.append(token)
      }
    }
    flush()
    return out
  }
}

/// `Fuse`: all tokens as one.
struct FuseDecoder: TokenDecoder {
  func decode(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// `Strip`: up to `start` leading and `stop` trailing `content` scalars removed from every token.
struct StripDecoder: TokenDecoder {
  let content: Unicode.Scalar
  let start: Int
  let stop: Int
  func decode(_ tokens: [String]) -> [String] {
    tokens.map { token in
      let chars = Array(token.unicodeScalars)
      var lower = 0
      while lower < min(start, chars.count) && chars[lower] == content { lower += 1 }
      var upper = chars.count
      var removed = 0
      while removed < stop && upper > lower && chars[upper - 1] == content {
        upper -= 1
        removed += 1
      }
      return string(chars[lower..<upper])
    }
  }
}

/// `Metaspace`: the replacement becomes a space, except in the first token unless `prepend_scheme` is never.
struct MetaspaceDecoder: TokenDecoder {
  let replacement: Unicode.Scalar
  let prependScheme: MetaspacePreTokenizer.PrependScheme
  func decode(_ tokens: [String]) -> [String] {
    tokens.enumerated().map { i, token in
      var view = String.UnicodeScalarView()
      for c in token.unicodeScalars {
        if c == replacement {
          if i == 0 && prependScheme != .never { continue }
          view.append(" ")
        } else {
          view.append(c)
        }
      }
      return String(view)
    }
  }
}

/// `Sequence` of decoders, chained.
struct SequenceDecoder: TokenDecoder {
  let decoders: [TokenDecoder]
  func decode(_ tokens: [String]) -> [String] { decoders.reduce(tokens) { $1.decode($0) } }
}
