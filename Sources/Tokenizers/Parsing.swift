import CheckpointIO

/// Builds the pipeline's components from tokenizer.json, refusing what it does not implement.
struct ParseContext {
  let path: String

  static let supportedModels = "BPE, WordPiece"
  static let supportedNormalizers =
    "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, BertNormalizer, Sequence"
  static let supportedPreTokenizers =
    "ByteLevel, Split, Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit, Digits, Punctuation, Sequence"
  static let supportedPostProcessors = "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence"
  static let supportedDecoders = "ByteLevel, WordPiece, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence"

  func invalid(_ reason: String) -> TokenizerError { .invalid(path: path, reason: reason) }

  func unsupported(_ component: String, _ type: String, supported: String) -> TokenizerError {
    .unsupported(
      path: path,
      reason:
        "the \(component) \"\(type)\" is not supported (supported: \(supported)); ids from it would be wrong, so "
        + "use the Python tokenizers library for this file")
  }

  func type(_ value: JSONValue, _ component: String) throws(TokenizerError) -> String {
    guard value.members != nil else { throw invalid("the \(component) is \(value.kindName), not an object") }
    guard let type = value["type"]?.stringValue else { throw invalid("the \(component) has no \"type\"") }
    return type
  }

  func string(_ value: JSONValue, _ key: String, _ component: String) throws(TokenizerError) -> String {
    guard let s = value[key]?.stringValue else { throw invalid("the \(component) has no string \"\(key)\"") }
    return s
  }

  func bool(_ value: JSONValue, _ key: String, default fallback: Bool) throws(TokenizerError) -> Bool {
    switch value[key] {
    case nil, .null: return fallback
    case .bool(let b): return b
    case let other?: throw invalid("\"\(key)\" is \(other.kindName), not a boolean")
    }
  }

  func int(_ value: JSONValue, _ key: String, default fallback: Int) throws(TokenizerError) -> Int {
    switch value[key] {
    case nil, .null: return fallback
    case let v?:
      guard let n = v.uint64Value, n <= UInt64(Int32.max) else {
        throw invalid("\"\(key)\" is \(v.kindName), not a small non-negative integer")
      }
      return Int(n)
    }
  }

  func singleScalar(_ s: String, _ what: String) throws(TokenizerError) -> Unicode.Scalar {
    guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
      throw invalid("\(what) \"\(s)\" must be one character")
    }
    return c
  }

  // MARK: Model

  func vocabulary(_ value: JSONValue?) throws(TokenizerError) -> Vocabulary {
    guard let members = value?.members else { throw invalid("the model has no \"vocab\" object") }
    var vocab = Vocabulary()
    for member in members {
      guard let id = member.value.uint64Value, id <= UInt64(Int32.max) else {
        throw invalid("the id of vocabulary token \"\(member.key)\" is \(member.value.kindName)")
      }
      vocab[member.key] = Int(id)
    }
    return vocab
  }

  /// Ids to tokens (the last token of an id wins, as the library's reversed map).
  func tokenTable(_ value: JSONValue?) throws(TokenizerError) -> [Int: String] {
    var tokens: [Int: String] = [:]
    for member in value?.members ?? [] {
      if let id = member.value.uint64Value { tokens[Int(id)] = member.key }
    }
    return tokens
  }

  func model(_ value: JSONValue) throws(TokenizerError) -> TokenizerModel {
    guard value.members != nil else { throw invalid("the model is \(value.kindName), not an object") }
    var type = value["type"]?.stringValue
    if type == nil {
      // The library guesses an untagged model from its fields.
      if value["merges"] != nil {
        type = "BPE"
      } else if value["max_input_chars_per_word"] != nil {
        type = "WordPiece"
      } else {
        throw invalid("the model has no \"type\" and is neither BPE nor WordPiece")
      }
    }
    switch type! {
    case "BPE": return try bpe(value)
    case "WordPiece": return try wordPiece(value)
    case let other: throw unsupported("model", other, supported: Self.supportedModels)
    }
  }

  func optionalString(_ value: JSONValue, _ key: String) throws(TokenizerError) -> String? {
    switch value[key] {
    case nil, .null: return nil
    case .string(let s): return s
    case let other?: throw invalid("\"\(key)\" is \(other.kindName), not a string")
    }
  }

  func bpe(_ value: JSONValue) throws(TokenizerError) -> BPEModel {
    if let dropout = value["dropout"], dropout != .null, dropout.doubleValue != 0 {
      throw .unsupported(
        path: path, reason: "BPE dropout is random at encoding time; set \"dropout\" to null for deterministic ids")
    }
    let vocab = try vocabulary(value["vocab"])
    let tokens = try tokenTable(value["vocab"])
    // GPT-2's file has "" for both, which changes nothing: the fast path of single-scalar lookups applies.
    let prefix = try optionalString(value, "continuing_subword_prefix").flatMap { $0.isEmpty ? nil : $0 }
    let suffix = try optionalString(value, "end_of_word_suffix").flatMap { $0.isEmpty ? nil : $0 }
    guard let mergeList = value["merges"]?.arrayValue else { throw invalid("the BPE model has no \"merges\" array") }
    var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
    merges.reserveCapacity(mergeList.count)
    for (rank, merge) in mergeList.enumerated() {
      let a: String
      let b: String
      if let pair = merge.arrayValue, pair.count == 2, let x = pair[0].stringValue, let y = pair[1].stringValue {
        (a, b) = (x, y)
      } else if let text = merge.stringValue, let space = text.firstIndex(of: " ") {
        (a, b) = (String(text[..<space]), String(text[text.index(after: space)...]))
      } else {
        throw invalid("merge \(rank) is neither [\"a\", \"b\"] nor \"a b\"")
      }
      guard let aId = vocab[a], let bId = vocab[b] else {
        throw invalid("merge \(rank) (\"\(a)\", \"\(b)\") uses a token missing from the vocabulary")
      }
      var bPart = b
      if let prefix, bPart.utf8.starts(with: prefix.utf8) {
        bPart = String(decoding: bPart.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
      }
      guard let merged = vocab[a + bPart] else {
        throw invalid("merge \(rank) gives \"\(a + bPart)\", which is not in the vocabulary")
      }
      merges[pairKey(aId, bId)] = (Int32(rank), Int32(merged))
    }
    var scalarIds: [UInt32: Int] = [:]
    for (id, token) in tokens where token.unicodeScalars.count == 1 {
      scalarIds[token.unicodeScalars.first!.value] = id
    }
    let unkToken = try optionalString(value, "unk_token")
    var unkId: Int? = nil
    if let unkToken {
      guard let id = vocab[unkToken] else { throw invalid("the unk_token \"\(unkToken)\" is not in the vocabulary") }
      unkId = id
    }
    let byteFallback = try bool(value, "byte_fallback", default: false)
    var byteIds: [Int]? = nil
    if byteFallback {
      byteIds = (0..<256).map { b in vocab["<0x" + hexByte(b) + ">"] ?? -1 }
    }
    // Byte-level when every byte's printable scalar is a token: only a description for `kind`.
    let byteLevel = byteToScalar.allSatisfy { scalarIds[$0.value] != nil }
    return BPEModel(
      vocab: vocab, tokens: tokens, merges: merges, scalarIds: scalarIds, unkId: unkId,
      fuseUnk: try bool(value, "fuse_unk", default: false), byteFallback: byteFallback, byteIds: byteIds,
      ignoreMerges: try bool(value, "ignore_merges", default: false), continuingSubwordPrefix: prefix,
      endOfWordSuffix: suffix, byteLevel: byteLevel)
  }

  func wordPiece(_ value: JSONValue) throws(TokenizerError) -> WordPieceModel {
    let vocab = try vocabulary(value["vocab"])
    let tokens = try tokenTable(value["vocab"])
    let unk = try optionalString(value, "unk_token") ?? "[UNK]"
    guard let unkId = vocab[unk] else { throw invalid("the unk_token \"\(unk)\" is not in the vocabulary") }
    let prefix = try optionalString(value, "continuing_subword_prefix") ?? "##"
    let longest = tokens.values.map { $0.unicodeScalars.count }.max() ?? 0
    return WordPieceModel(
      vocab: vocab, tokens: tokens, unkId: unkId, prefix: prefix,
      maxInputCharsPerWord: try int(value, "max_input_chars_per_word", default: 100), longestToken: longest)
  }

  // MARK: Added tokens

  func addedTokens(_ value: JSONValue?, model: TokenizerModel) throws(TokenizerError) -> AddedTokens {
    var tokens: [AddedToken] = []
    if let value, value != .null {
      guard let list = value.arrayValue else { throw invalid("\"added_tokens\" is \(value.kindName), not an array") }
      for entry in list {
        guard let content = entry["content"]?.stringValue, let id = entry["id"]?.uint64Value else {
          throw invalid("an added token has no \"content\" string or \"id\" number")
        }
        let special = try bool(entry, "special", default: false)
        tokens.append(
          AddedToken(
            id: Int(id), content: content, scalars: Array(content.unicodeScalars),
            singleWord: try bool(entry, "single_word", default: false),
            lstrip: try bool(entry, "lstrip", default: false), rstrip: try bool(entry, "rstrip", default: false),
            normalized: try bool(entry, "normalized", default: !special), special: special))
      }
    }
    return AddedTokens(tokens, model: model)
  }

  // MARK: Normalizers

  func normalizer(_ value: JSONValue?) throws(TokenizerError) -> Normalizer? {
    guard let value, value != .null else { return nil }
    let type = try type(value, "normalizer")
    switch type {
    case "NFC": return UnicodeNormalizer(form: .nfc)
    case "NFD": return UnicodeNormalizer(form: .nfd)
    case "NFKC": return UnicodeNormalizer(form: .nfkc)
    case "NFKD": return UnicodeNormalizer(form: .nfkd)
    case "Lowercase": return LowercaseNormalizer()
    case "StripAccents": return StripAccentsNormalizer()
    case "Strip":
      return StripNormalizer(
        left: try bool(value, "strip_left", default: true), right: try bool(value, "strip_right", default: true))
    case "Prepend":
      return PrependNormalizer(prefix: Array(try string(value, "prepend", "Prepend normalizer").unicodeScalars))
    case "Replace":
      let content = Array(try string(value, "content", "Replace normalizer").unicodeScalars)
      switch try pattern(value, "Replace normalizer") {
      case .literal(let p): return ReplaceNormalizer(pattern: p, content: content)
      case let regex: return RegexReplaceNormalizer(regex: regex, content: content)
      }
    case "BertNormalizer":
      let lowercase = try bool(value, "lowercase", default: true)
      return BertNormalizer(
        cleanText: try bool(value, "clean_text", default: true),
        handleChineseChars: try bool(value, "handle_chinese_chars", default: true),
        stripAccents: try bool(value, "strip_accents", default: lowercase), lowercase: lowercase)
    case "Sequence":
      guard let list = value["normalizers"]?.arrayValue else { throw invalid("a Sequence normalizer has no list") }
      var normalizers: [Normalizer] = []
      for item in list {
        if let n = try normalizer(item) { normalizers.append(n) }
      }
      return SequenceNormalizer(normalizers: normalizers)
    default: throw unsupported("normalizer", type, supported: Self.supportedNormalizers)
    }
  }

  /// A `{"String": ...}` or `{"Regex": ...}` pattern.
  func pattern(_ value: JSONValue, _ component: String) throws(TokenizerError) -> SplitRegex {
    guard let p = value["pattern"] else { throw invalid("the \(component) has no \"pattern\"") }
    if let literal = p["String"]?.stringValue { return .literal(Array(literal.unicodeScalars)) }
    if let source = p["Regex"]?.stringValue {
      guard let regex = SplitRegex.compile(source) else {
        throw .unsupported(path: path, reason: "the \(component) regex \(source) does not compile with ICU")
      }
      return regex
    }
    throw invalid("the \(component) pattern is neither {\"String\": ...} nor {\"Regex\": ...}")
  }

  // MARK: Pre-tokenizers

  func preTokenizer(_ value: JSONValue?) throws(TokenizerError) -> PreTokenizer? {
    guard let value, value != .null else { return nil }
    let type = try type(value, "pre-tokenizer")
    switch type {
    case "ByteLevel":
      return ByteLevelPreTokenizer(
        addPrefixSpace: try bool(value, "add_prefix_space", default: true),
        useRegex: try bool(value, "use_regex", default: true))
    case "Split":
      let behaviorName = try string(value, "behavior", "Split pre-tokenizer")
      guard let behavior = SplitBehavior(rawValue: behaviorName) else {
        throw invalid("the Split behavior \"\(behaviorName)\" is unknown")
      }
      return SplitPreTokenizer(
        regex: try pattern(value, "Split pre-tokenizer"), behavior: behavior,
        invert: try bool(value, "invert", default: false))
    case "Metaspace":
      let replacement = try singleScalar(try string(value, "replacement", "Metaspace"), "the Metaspace replacement")
      var scheme = MetaspacePreTokenizer.PrependScheme.always
      if let name = value["prepend_scheme"]?.stringValue {
        guard let s = MetaspacePreTokenizer.PrependScheme(rawValue: name) else {
          throw invalid("the Metaspace prepend_scheme \"\(name)\" is not first, always or never")
        }
        scheme = s
      } else if try !bool(value, "add_prefix_space", default: true) {
        scheme = .never
      }
      return MetaspacePreTokenizer(
        replacement: replacement, prependScheme: scheme, split: try bool(value, "split", default: true))
    case "BertPreTokenizer": return BertPreTokenizer()
    case "WhitespaceSplit": return WhitespaceSplitPreTokenizer()
    case "Whitespace": return WhitespacePreTokenizer()
    case "Digits": return DigitsPreTokenizer(individualDigits: try bool(value, "individual_digits", default: false))
    case "Punctuation":
      let name = value["behavior"]?.stringValue ?? "Isolated"
      guard let behavior = SplitBehavior(rawValue: name) else {
        throw invalid("the Punctuation behavior \"\(name)\" is unknown")
      }
      return PunctuationPreTokenizer(behavior: behavior)
    case "Sequence":
      guard let list = value["pretokenizers"]?.arrayValue else {
        throw invalid("a Sequence pre-tokenizer has no \"pretokenizers\" list")
      }
      var items: [PreTokenizer] = []
      for item in list {
        if let p = try preTokenizer(item) { items.append(p) }
      }
      return SequencePreTokenizer(preTokenizers: items)
    default: throw unsupported("pre-tokenizer", type, supported: Self.supportedPreTokenizers)
    }
  }

  // MARK: Post-processors

  func postProcessor(
    _ value: JSONValue?, addedTokens: AddedTokens, model: TokenizerModel
  ) throws(TokenizerError) -> PostProcessor? {
    guard let value, value != .null else { return nil }
    let type = try type(value, "post-processor")
    switch type {
    case "ByteLevel": return PostProcessor(prefixIds: [], suffixIds: [])
    case "BertProcessing", "RobertaProcessing":
      func pair(_ key: String) throws(TokenizerError) -> Int {
        guard let p = value[key]?.arrayValue, p.count == 2, let id = p[1].uint64Value else {
          throw invalid("the \(type) has no [\"token\", id] \"\(key)\"")
        }
        return Int(id)
      }
      return PostProcessor(prefixIds: [try pair("cls")], suffixIds: [try pair("sep")])
    case "TemplateProcessing":
      guard let single = value["single"]?.arrayValue else { throw invalid("the TemplateProcessing has no \"single\"") }
      let specials = value["special_tokens"]
      var prefix: [Int] = []
      var suffix: [Int] = []
      var seenSequence = false
      for item in single {
        if let special = item["SpecialToken"] {
          let name = try string(special, "id", "TemplateProcessing special token")
          guard let entry = specials?[name], let ids = entry["ids"]?.arrayValue else {
            throw invalid("the template's special token \"\(name)\" is not in \"special_tokens\"")
          }
          var resolved: [Int] = []
          for id in ids {
            guard let n = id.uint64Value else { throw invalid("an id of special token \"\(name)\" is not a number") }
            resolved.append(Int(n))
          }
          if seenSequence { suffix += resolved } else { prefix += resolved }
        } else if let sequence = item["Sequence"] {
          guard try string(sequence, "id", "TemplateProcessing sequence") == "A", !seenSequence else {
            throw invalid("the single-sequence template must hold $A once")
          }
          seenSequence = true
        } else {
          throw invalid("a template item is neither SpecialToken nor Sequence")
        }
      }
      guard seenSequence else { throw invalid("the single-sequence template has no $A") }
      return PostProcessor(prefixIds: prefix, suffixIds: suffix)
    case "Sequence":
      guard let list = value["processors"]?.arrayValue else {
        throw invalid("a Sequence post-processor has no \"processors\" list")
      }
      var items: [PostProcessor] = []
      for item in list {
        if let p = try postProcessor(item, addedTokens: addedTokens, model: model) { items.append(p) }
      }
      return PostProcessor.sequence(items)
    default: throw unsupported("post-processor", type, supported: Self.supportedPostProcessors)
    }
  }

  // MARK: Decoders

  func decoder(_ value: JSONValue?) throws(TokenizerError) -> TokenDecoder? {
    guard let value, value != .null else { return nil }
    let type = try type(value, "decoder")
    switch type {
    case "ByteLevel": return ByteLevelDecoder()
    case "WordPiece":
      return WordPieceDecoder(
        prefix: try optionalString(value, "prefix") ?? "##", cleanup: try bool(value, "cleanup", default: true))
    case "Metaspace":
      let replacement = try singleScalar(try string(value, "replacement", "Metaspace"), "the Metaspace replacement")
      var scheme = MetaspacePreTokenizer.PrependScheme.always
      if let name = value["prepend_scheme"]?.stringValue {
        guard let s = MetaspacePreTokenizer.PrependScheme(rawValue: name) else {
          throw invalid("the Metaspace prepend_scheme \"\(name)\" is not first, always or never")
        }
        scheme = s
      } else if try !bool(value, "add_prefix_space", default: true) {
        scheme = .never
      }
      return MetaspaceDecoder(replacement: replacement, prependScheme: scheme)
    case "Replace":
      let content = Array(try string(value, "content", "Replace decoder").unicodeScalars)
      guard case .literal(let p) = try pattern(value, "Replace decoder") else {
        throw unsupported("decoder", "Replace with a regex", supported: "Replace with a String pattern")
      }
      return ReplaceDecoder(pattern: p, content: content)
    case "ByteFallback": return ByteFallbackDecoder()
    case "Fuse": return FuseDecoder()
    case "Strip":
      let content = try singleScalar(try string(value, "content", "Strip decoder"), "the Strip content")
      return StripDecoder(
        content: content, start: try int(value, "start", default: 0), stop: try int(value, "stop", default: 0))
    case "Sequence":
      guard let list = value["decoders"]?.arrayValue else { throw invalid("a Sequence decoder has no \"decoders\"") }
      var items: [TokenDecoder] = []
      for item in list {
        if let d = try decoder(item) { items.append(d) }
      }
      return SequenceDecoder(decoders: items)
    default: throw unsupported("decoder", type, supported: Self.supportedDecoders)
    }
  }

  // MARK: Truncation

  /// The file's `truncation.max_length` (right truncation only).
  func truncation(_ value: JSONValue?) throws(TokenizerError) -> Int? {
    guard let value, value != .null else { return nil }
    if let direction = value["direction"]?.stringValue, direction != "Right" {
      throw .unsupported(path: path, reason: "truncation direction \(direction) is not supported (only Right)")
    }
    if let stride = value["stride"]?.uint64Value, stride != 0 {
      throw .unsupported(path: path, reason: "truncation with a stride is not supported (set \"stride\" to 0)")
    }
    return try int(value, "max_length", default: Int(Int32.max))
  }
}

private func hexByte(_ b: Int) -> String {
  let digits = Array("0123456789ABCDEF")
  return String([digits[b >> 4], digits[b & 15]])
}
