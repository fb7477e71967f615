import Foundation

/// A regex of a `Split` pre-tokenizer or `Replace` component: the three split patterns of GPT-2, Llama 3 and
/// Qwen2 are hand-written scanners that follow Oniguruma's matching exactly; any other pattern goes to ICU
/// (NSRegularExpression), whose syntax and Unicode classes are close to Oniguruma's but not guaranteed equal.
enum SplitRegex: Sendable {
  case gpt2
  case llama3
  case qwen2
  case literal([Unicode.Scalar])
  case icu(ICURegex)

  static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
  static let llama3Pattern =
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
  static let qwen2Pattern =
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

  /// The regex of `pattern`; nil when ICU cannot compile it.
  static func compile(_ pattern: String) -> SplitRegex? {
    switch pattern {
    case gpt2Pattern: return .gpt2
    case llama3Pattern: return .llama3
    case qwen2Pattern: return .qwen2
    default:
      guard let regex = try? NSRegularExpression(pattern: pattern) else { return nil }
      return .icu(ICURegex(regex: regex))
    }
  }

  /// The non-overlapping matches in `text`, left to right, as scalar ranges.
  func matches(_ text: [Unicode.Scalar]) -> [Range<Int>] {
    switch self {
    case .gpt2: return scanMatches(text, scanGPT2)
    case .llama3: return scanMatches(text) { scanLlama3($0, $1, digitsAtOnce: 3) }
    case .qwen2: return scanMatches(text) { scanLlama3($0, $1, digitsAtOnce: 1) }
    case .literal(let pattern): return literalMatches(text, pattern)
    case .icu(let regex): return regex.matches(text)
    }
  }
}

/// NSRegularExpression is thread-safe for matching; it is not marked Sendable.
struct ICURegex: @unchecked Sendable {
  let regex: NSRegularExpression

  func matches(_ text: [Unicode.Scalar]) -> [Range<Int>] {
    var view = String.UnicodeScalarView()
    view.append(contentsOf: text)
    let string = String(view)
    // NSRange counts UTF-16 units: map them back to scalar indices.
    var scalarAtUnit: [Int] = []
    scalarAtUnit.reserveCapacity(text.count * 2 + 1)
    for (k, c) in text.enumerated() {
      scalarAtUnit.append(k)
      if c.value > 0xFFFF { scalarAtUnit.append(k) }
    }
    scalarAtUnit.append(text.count)
    let results = regex.matches(in: string, range: NSRange(location: 0, length: scalarAtUnit.count - 1))
    return results.compactMap { result in
      let r = result.range
      guard r.location != NSNotFound, r.length > 0 else { return nil }
      return scalarAtUnit[r.location]..<scalarAtUnit[r.location + r.length]
    }
  }
}

private func literalMatches(_ text: [Unicode.Scalar], _ pattern: [Unicode.Scalar]) -> [Range<Int>] {
  guard !pattern.isEmpty else { return [] }
  var out: [Range<Int>] = []
  var i = 0
  while i + pattern.count <= text.count {
    if text[i..<(i + pattern.count)].elementsEqual(pattern) {
      out.append(i..<(i + pattern.count))
      i += pattern.count
    } else {
      i += 1
    }
  }
  return out
}

/// Runs a scanner at every position: it returns the end of the match starting there, or nil.
private func scanMatches(
  _ text: [Unicode.Scalar], _ scan: ([Unicode.Scalar], Int) -> Int?
) -> [Range<Int>] {
  var out: [Range<Int>] = []
  var i = 0
  while i < text.count {
    if let end = scan(text, i), end > i {
      out.append(i..<end)
      i = end
    } else {
      i += 1
    }
  }
  return out
}

// MARK: - Character classes as Oniguruma (tokenizers 0.23.3) sees them

/// Letters and numbers that Swift's Unicode tables know but the Oniguruma of `tokenizers` 0.23.3 does not
/// (assigned in a later Unicode version): measured by splitting every scalar with `\p{L}` and `\p{N}` there.
private let lettersUnknownToOniguruma: [ClosedRange<UInt32>] = [
  0x88F...0x88F, 0xC5C...0xC5C, 0xCDC...0xCDC, 0xA7CE...0xA7CF, 0xA7D2...0xA7D2, 0xA7D4...0xA7D4,
  0xA7F1...0xA7F1, 0x10940...0x10959, 0x10EC5...0x10EC7, 0x11DB0...0x11DDB, 0x16EA0...0x16EB8,
  0x16EBB...0x16ED3, 0x16FF2...0x16FF3, 0x187F8...0x187FF, 0x18D09...0x18D1E, 0x18D80...0x18DF2,
  0x1E6C0...0x1E6DE, 0x1E6E0...0x1E6E2, 0x1E6E4...0x1E6E5, 0x1E6E7...0x1E6ED, 0x1E6F0...0x1E6F4,
  0x1E6FE...0x1E6FF, 0x2B73A...0x2B73F, 0x2CEA2...0x2CEAD, 0x323B0...0x33479,
]
private let numbersUnknownToOniguruma: [ClosedRange<UInt32>] = [0x11DE0...0x11DE9, 0x16FF4...0x16FF6]

/// The class of a scalar for the split patterns.
enum ScalarClass: UInt8 {
  case letter, number, space, other
}

@inline(__always)
func scalarClass(_ c: Unicode.Scalar) -> ScalarClass {
  let v = c.value
  if v < 0x80 {
    switch v {
    case 0x41...0x5A, 0x61...0x7A: return .letter
    case 0x30...0x39: return .number
    case 0x09...0x0D, 0x20: return .space
    default: return .other
    }
  }
  let properties = c.properties
  if properties.isWhitespace { return .space }
  switch properties.generalCategory {
  case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
    if v >= 0x88F && lettersUnknownToOniguruma.contains(where: { $0.contains(v) }) { return .other }
    return .letter
  case .decimalNumber, .letterNumber, .otherNumber:
    if v >= 0x11DE0 && numbersUnknownToOniguruma.contains(where: { $0.contains(v) }) { return .other }
    return .number
  default: return .other
  }
}

/// Whether `c` is one of the letters or numbers Swift knows but the Unicode tables of `tokenizers` do not.
func isAssignedAfterOniguruma(_ c: Unicode.Scalar) -> Bool {
  let v = c.value
  return lettersUnknownToOniguruma.contains { $0.contains(v) } || numbersUnknownToOniguruma.contains { $0.contains(v) }
}

@inline(__always) private func isCRLF(_ c: Unicode.Scalar) -> Bool { c == "\r" || c == "\n" }

private func run(_ text: [Unicode.Scalar], from start: Int, while predicate: (Unicode.Scalar) -> Bool) -> Int {
  var j = start
  while j < text.count && predicate(text[j]) { j += 1 }
  return j
}

/// `\s+(?!\S)|\s+` at `i` (a whitespace scalar): the run, less its last scalar when a non-space follows
/// and the run is longer than one.
private func whitespaceMatch(_ text: [Unicode.Scalar], _ i: Int) -> Int {
  let j = run(text, from: i) { scalarClass($0) == .space }
  if j == text.count || j - 1 == i { return j }
  return j - 1
}

/// The contraction at `i` (`'s|'t|'re|'ve|'m|'ll|'d`), case-insensitively or not.
private func contraction(_ text: [Unicode.Scalar], _ i: Int, ignoringCase: Bool) -> Int? {
  guard text[i] == "'", i + 1 < text.count else { return nil }
  func letter(_ k: Int) -> Unicode.Scalar? {
    guard k < text.count else { return nil }
    let c = text[k]
    guard ignoringCase else { return c }
    if c.value >= 0x41 && c.value <= 0x5A { return Unicode.Scalar(c.value + 32)! }
    if c.value == 0x17F { return "s" }  // LATIN SMALL LETTER LONG S folds to s
    return c
  }
  switch letter(i + 1) {
  case "s", "t", "m", "d": return i + 2
  case "r", "v": return letter(i + 2) == "e" ? i + 3 : nil
  case "l": return letter(i + 2) == "l" ? i + 3 : nil
  default: return nil
  }
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
private func scanGPT2(_ text: [Unicode.Scalar], _ i: Int) -> Int? {
  if let end = contraction(text, i, ignoringCase: false) { return end }
  let c = text[i]
  let cls = scalarClass(c)
  let next: ScalarClass? = i + 1 < text.count ? scalarClass(text[i + 1]) : nil
  if c == " ", let next, next != .space {
    return run(text, from: i + 1) { scalarClass($0) == next }
  }
  if cls != .space { return run(text, from: i) { scalarClass($0) == cls } }
  return whitespaceMatch(text, i)
}

/// Llama 3 (`digitsAtOnce` 3) and Qwen2 (1): `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
private func scanLlama3(_ text: [Unicode.Scalar], _ i: Int, digitsAtOnce: Int) -> Int? {
  if let end = contraction(text, i, ignoringCase: true) { return end }
  let c = text[i]
  let cls = scalarClass(c)
  let n = text.count
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if cls == .letter { return run(text, from: i) { scalarClass($0) == .letter } }
  if cls != .number && !isCRLF(c) && i + 1 < n && scalarClass(text[i + 1]) == .letter {
    return run(text, from: i + 1) { scalarClass($0) == .letter }
  }
  // \p{N}{1,3}
  if cls == .number {
    var j = i + 1
    while j < n && j - i < digitsAtOnce && scalarClass(text[j]) == .number { j += 1 }
    return j
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  var otherStart: Int? = nil
  if cls == .other {
    otherStart = i
  } else if c == " " && i + 1 < n && scalarClass(text[i + 1]) == .other {
    otherStart = i + 1
  }
  if let otherStart {
    let j = run(text, from: otherStart) { scalarClass($0) == .other }
    return run(text, from: j, while: isCRLF)
  }
  // \s*[\r\n]+ : up to and including the last CR or LF of the whitespace run.
  let j = run(text, from: i) { scalarClass($0) == .space }
  var k = j - 1
  while k >= i && !isCRLF(text[k]) { k -= 1 }
  if k >= i { return k + 1 }
  return whitespaceMatch(text, i)
}
