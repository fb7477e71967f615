/// The `model` of tokenizer.json: turns one pre-tokenized word into ids.
protocol TokenizerModel: Sendable {
  var kind: String { get }
  var vocabularySize: Int { get }
  func id(of token: String) -> Int?
  func token(of id: Int) -> String?
  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int])
}

func string(_ scalars: some Sequence<Unicode.Scalar>) -> String {
  var view = String.UnicodeScalarView()
  view.append(contentsOf: scalars)
  return String(view)
}

/// Byte-pair encoding as `tokenizers`' `BPE`: the word's scalars (or their `<0xAB>` byte tokens with
/// `byte_fallback`, or `unk_token`, fused when `fuse_unk`) merged pair by pair, always the pair of lowest merge
/// rank, leftmost first. With `ignore_merges`, a word that is itself a token is that token.
struct BPEModel: TokenizerModel {
  let vocab: Vocabulary
  let tokens: [Int: String]
  /// (left id << 32 | right id) -> (rank, merged id).
  let merges: [UInt64: (rank: Int32, id: Int32)]
  /// The ids of single-scalar tokens (without prefix or suffix), the common case of the first lookup.
  let scalarIds: [UInt32: Int]
  let unkId: Int?
  let fuseUnk: Bool
  let byteFallback: Bool
  let byteIds: [Int]?
  let ignoreMerges: Bool
  let continuingSubwordPrefix: String?
  let endOfWordSuffix: String?
  let byteLevel: Bool

  var kind: String {
    var parts: [String] = []
    if byteLevel { parts.append("byte-level") }
    if byteFallback { parts.append("byte fallback") }
    if ignoreMerges { parts.append("ignore_merges") }
    return parts.isEmpty ? "BPE" : "BPE (\(parts.joined(separator: ", ")))"
  }
  var vocabularySize: Int { vocab.count }
  func id(of token: String) -> Int? { vocab[token] }
  func token(of id: Int) -> String? { tokens[id] }

  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
    if ignoreMerges, let id = vocab[word] {
      ids.append(id)
      return
    }
    var symbols: [Int] = []
    symbols.reserveCapacity(word.count)
    var unk: Int? = nil  // a pending unknown token (fused ones are one)
    for (k, c) in word.enumerated() {
      let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
      var id: Int?
      var text: String? = nil
      if plain {
        id = scalarIds[c.value]
      } else {
        var s = String(Character(c))
        if k > 0, let prefix = continuingSubwordPrefix { s = prefix + s }
        if k == word.count - 1, let suffix = endOfWordSuffix { s += suffix }
        id = vocab[s]
        text = s
      }
      if let id {
        if let pending = unk {
          symbols.append(pending)
          unk = nil
        }
        symbols.append(id)
        continue
      }
      if byteFallback, let byteIds {
        let bytes = Array((text ?? String(Character(c))).utf8)
        if bytes.allSatisfy({ byteIds[Int($0)] >= 0 }) {
          // As the library, byte tokens do not flush a pending unknown token.
          for b in bytes { symbols.append(byteIds[Int(b)]) }
          continue
        }
      }
      if let unkId {
        if let pending = unk, !fuseUnk { symbols.append(pending) }
        unk = unkId
      }
    }
    if let pending = unk { symbols.append(pending) }
    merge(&symbols)
    ids.append(contentsOf: symbols)
  }

  /// The library's merge loop: a priority queue of (rank, position) over adjacent pairs; a popped entry is
  /// stale when its left symbol was merged away or its pair no longer gives the same token.
  private func merge(_ symbols: inout [Int]) {
    let n = symbols.count
    guard n > 1 else { return }
    var next = Array(1...n)
    next[n - 1] = -1
    var prev = Array(-1..<(n - 1))
    var alive = [Bool](repeating: true, count: n)
    var heap = MergeHeap()
    for i in 0..<(n - 1) {
      if let m = merges[pairKey(symbols[i], symbols[i + 1])] { heap.push(rank: m.rank, position: i, id: m.id) }
    }
    while let top = heap.pop() {
      let p = top.position
      guard alive[p], next[p] >= 0 else { continue }
      let right = next[p]
      guard let m = merges[pairKey(symbols[p], symbols[right])], m.id == top.id else { continue }
      symbols[p] = Int(m.id)
      alive[right] = false
      next[p] = next[right]
      if next[right] >= 0 { prev[next[right]] = p }
      if prev[p] >= 0, let m = merges[pairKey(symbols[prev[p]], symbols[p])] {
        heap.push(rank: m.rank, position: prev[p], id: m.id)
      }
      if next[p] >= 0, let m = merges[pairKey(symbols[p], symbols[next[p]])] {
        heap.push(rank: m.rank, position: p, id: m.id)
      }
    }
    var out: [Int] = []
    out.reserveCapacity(n)
    for i in 0..<n where alive[i] { out.append(symbols[i]) }
    symbols = out
  }
}

@inline(__always) func pairKey(_ a: Int, _ b: Int) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

/// A binary min-heap of merges ordered by (rank, position).
struct MergeHeap {
  struct Entry {
    var rank: Int32
    var position: Int
    var id: Int32
  }
  private var items: [Entry] = []

  private static func less(_ a: Entry, _ b: Entry) -> Bool {
    a.rank != b.rank ? a.rank < b.rank : a.position < b.position
  }

  mutating func push(rank: Int32, position: Int, id: Int32) {
    items.append(Entry(rank: rank, position: position, id: id))
    var i = items.count - 1
    while i > 0 {
      let parent = (i - 1) / 2
      guard Self.less(items[i], items[parent]) else { break }
      items.swapAt(i, parent)
      i = parent
    }
  }

  mutating func pop() -> Entry? {
    guard let first = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var i = 0
      while true {
        let l = 2 * i + 1
        let r = l + 1
        var smallest = i
        if l < items.count && Self.less(items[l], items[smallest]) { smallest = l }
        if r < items.count && Self.less(items[r], items[smallest]) { smallest = r }
        if smallest == i { break }
        items.swapAt(i, smallest)
        i = smallest
      }
    }
    return first
  }
}

/// `WordPiece`: the longest vocabulary prefix, then the longest `##`-prefixed continuation, and so on; a word
/// with an unmatched rest, or longer than `max_input_chars_per_word` scalars, is `unk_token`.
struct WordPieceModel: TokenizerModel {
  let vocab: Vocabulary
  let tokens: [Int: String]
  let unkId: Int
  let prefix: String
  let maxInputCharsPerWord: Int
  /// The most scalars of a token without the prefix: longer candidates cannot match and are not tried.
  let longestToken: Int

  var kind: String { "WordPiece" }
  var vocabularySize: Int { vocab.count }
  func id(of token: String) -> Int? { vocab[token] }
  func token(of id: Int) -> String? { tokens[id] }

  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
    if word.count > maxInputCharsPerWord {
      ids.append(unkId)
      return
    }
    var pieces: [Int] = []
    // The word's UTF-8 once, with the byte offset of every scalar; candidates are byte slices of it.
    var bytes: [UInt8] = []
    var offsets: [Int] = []
    for c in word {
      offsets.append(bytes.count)
      UTF8.encode(c) { bytes.append($0) }
    }
    offsets.append(bytes.count)
    let prefixBytes = Array(prefix.utf8)
    var start = 0
    while start < word.count {
      var end = min(word.count, start + longestToken)
      var found: Int? = nil
      while start < end {
        let slice = bytes[offsets[start]..<offsets[end]]
        let id = start > 0 ? vocab[bytes: prefixBytes + slice] : vocab[bytes: Array(slice)]
        if let id {
          found = id
          break
        }
        end -= 1
      }
      guard let found else {
        ids.append(unkId)
        return
      }
      pieces.append(found)
      start = end
    }
    ids.append(contentsOf: pieces)
  }
}

/// Tokens to ids, compared byte for byte: Swift's `String` equality is canonical equivalence ("e\u{301}" ==
/// "é"), the library's is not, so a `[String: Int]` would find tokens the library does not.
struct Vocabulary: Sendable {
  private var ids: [TokenBytes: Int] = [:]

  var count: Int { ids.count }

  subscript(token: String) -> Int? {
    get { ids[TokenBytes(Array(token.utf8))] }
    set { ids[TokenBytes(Array(token.utf8))] = newValue }
  }

  subscript(scalars: some Collection<Unicode.Scalar>) -> Int? { ids[TokenBytes(utf8(scalars))] }

  subscript(bytes bytes: [UInt8]) -> Int? { ids[TokenBytes(bytes)] }
}

/// A token's UTF-8, hashed as one block of bytes (an array's own hashing feeds the hasher byte by byte).
struct TokenBytes: Hashable, Sendable {
  let bytes: [UInt8]
  init(_ bytes: [UInt8]) { self.bytes = bytes }
  func hash(into hasher: inout Hasher) {
    bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
  }
}

func utf8(_ scalars: some Collection<Unicode.Scalar>) -> [UInt8] {
  var out: [UInt8] = []
  out.reserveCapacity(scalars.count)
  for c in scalars { UTF8.encode(c) { out.append($0) } }
  return out
}
