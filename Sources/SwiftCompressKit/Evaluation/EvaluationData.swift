import CheckpointIO
import Foundation

/// How a data file was read.
public enum EvaluationDataFormat: String, Codable, Sendable {
  /// Plain text, one sample per line (blank lines skipped).
  case textLines = "text-lines"
  /// JSON lines, each an object with a string `text` field.
  case jsonText = "jsonl-text"
  /// `--tokens`: JSON lines, each a list of ids (or an object with an `input_ids` list).
  case jsonTokens = "jsonl-token-ids"
  /// `--tokens`: a safetensors file with one I32 or I64 tensor [samples, length].
  case safetensorsTokens = "safetensors-token-ids"
}

/// How samples are drawn from a data file and cut.
public struct SamplingOptions: Codable, Sendable, Equatable {
  /// How many samples to draw (all when nil).
  public var samples: Int?
  /// The seed of the draw.
  public var seed: UInt64
  /// Tokens per sample: longer samples are truncated, or with `pack` every sample is this long.
  public var seqLen: Int?
  /// Concatenate all token streams and cut them into `seqLen`-token samples.
  public var pack: Bool

  public static let defaultSeed: UInt64 = 0

  public init(samples: Int? = nil, seed: UInt64 = SamplingOptions.defaultSeed, seqLen: Int? = nil, pack: Bool = false) {
    self.samples = samples
    self.seed = seed
    self.seqLen = seqLen
    self.pack = pack
  }

  enum CodingKeys: String, CodingKey {
    case samples, seed, pack
    case seqLen = "seq_len"
  }
}

/// A data file read as text samples (before tokenization) or as token ids.
public struct RawSamples: Sendable {
  /// The file read.
  public var path: String
  public var format: EvaluationDataFormat
  /// Each sample's text (text formats) ...
  public var texts: [String]
  /// ... or ids (token formats).
  public var ids: [[Int]]
  /// Where each sample is in the file: its 1-based line number, or row for safetensors.
  public var labels: [String]

  public init(path: String, format: EvaluationDataFormat, texts: [String], ids: [[Int]], labels: [String]) {
    self.path = path
    self.format = format
    self.texts = texts
    self.ids = ids
    self.labels = labels
  }

  public var count: Int { format == .textLines || format == .jsonText ? texts.count : ids.count }
}

/// The token sequences a command computes on, and where they came from.
public struct EvaluationSamples: Sendable {
  public var sequences: [[Int32]]
  /// Where each sequence came from ("line 12", "row 3", "packed 4").
  public var labels: [String]
  public var info: DataInfo
  /// Warnings for the user (truncation to the model's positions).
  public var warnings: [String]

  public init(sequences: [[Int32]], labels: [String], info: DataInfo, warnings: [String]) {
    self.sequences = sequences
    self.labels = labels
    self.info = info
    self.warnings = warnings
  }
}

extension EvaluationSamples {
  /// Refuses ids outside `vocabularySize`, naming the sample (the model's, once it is open).
  public func check(vocabularySize: Int) throws(SwiftCompressError) {
    for (sequence, label) in zip(sequences, labels) {
      try EvaluationData.check(sequence.map(Int.init), label: label, path: info.file, vocabularySize: vocabularySize)
    }
  }

  /// Refuses samples a decoder scores no position of: a position is scored when a token of its
  /// sample follows it, so at least one sample needs 2 tokens (encoders score every sample).
  public func requireScoredPositions(for kind: ModelKind?) throws(SwiftCompressError) {
    guard kind == .decoder, !sequences.contains(where: { $0.count >= 2 }) else { return }
    throw .invalidFile(
      path: info.file,
      reason:
        "no sample has 2 or more tokens; nothing to score (a decoder scores each position followed by a token of its sample): give longer samples or a larger --seq-len"
    )
  }
}

/// What the reports say about the data.
public struct DataInfo: Codable, Sendable, Equatable {
  public var file: String
  public var format: EvaluationDataFormat
  /// Samples in the file.
  public var fileSamples: Int
  /// Samples computed on.
  public var samples: Int
  public var tokens: Int
  /// "truncate" or "pack".
  public var mode: String
  public var seqLen: Int?
  public var seed: UInt64
  /// CRC-32 (hex) of the ids: each sequence's length then its ids, as little-endian Int64.
  public var tokenHash: String

  public init(
    file: String, format: EvaluationDataFormat, fileSamples: Int, samples: Int, tokens: Int, mode: String,
    seqLen: Int?, seed: UInt64, tokenHash: String
  ) {
    self.file = file
    self.format = format
    self.fileSamples = fileSamples
    self.samples = samples
    self.tokens = tokens
    self.mode = mode
    self.seqLen = seqLen
    self.seed = seed
    self.tokenHash = tokenHash
  }

  enum CodingKeys: String, CodingKey {
    case file, format, samples, tokens, mode, seed
    case fileSamples = "file_samples"
    case seqLen = "seq_len"
    case tokenHash = "token_hash"
  }
}

/// Reading, drawing and cutting the samples of `evaluate`, `calibrate` and `tokenize`.
///
/// A text file holds one sample per line; when its first non-blank line is a JSON object with a
/// string `text` field, every non-blank line must be one (JSON lines). Blank lines are skipped.
/// `--samples N` draws N samples without replacement with SplitMix64 seeded by `--seed` (a
/// partial Fisher-Yates shuffle of the sample indices) and keeps them in file order; without
/// `--pack` the draw is over the file's samples, with `--pack` over the packed samples.
public enum EvaluationData {
  /// Reads the text samples of `path`.
  public static func readText(_ path: String) throws(SwiftCompressError) -> RawSamples {
    let data = try contents(path)
    var texts: [String] = []
    var labels: [String] = []
    var format: EvaluationDataFormat?
    var lineNumber = 0
    for lineBytes in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
      lineNumber += 1
      var bytes = lineBytes
      if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
      if lineNumber == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
      guard let line = String(validating: bytes, as: UTF8.self) else {
        throw .invalidFile(path: path, reason: "line \(lineNumber) is not UTF-8 text")
      }
      if line.allSatisfy(\.isWhitespace) { continue }
      if format == nil {
        format = jsonText(line) != nil ? .jsonText : .textLines
      }
      if format == .jsonText {
        guard let text = jsonText(line) else {
          throw .invalidFile(
            path: path,
            reason:
              "line \(lineNumber) is not a JSON object with a string \"text\" field, as the first line is (JSON lines); write one sample per line, all plain text or all JSON lines"
          )
        }
        texts.append(text)
      } else {
        texts.append(line)
      }
      labels.append("line \(lineNumber)")
    }
    guard !texts.isEmpty else {
      throw .invalidFile(
        path: path, reason: "holds no samples; write one sample per line (text, or JSON lines with a \"text\" field)")
    }
    return RawSamples(path: path, format: format ?? .textLines, texts: texts, ids: [], labels: labels)
  }

  /// Reads the token ids of `path`: a safetensors file (by its `.safetensors` extension) or JSON lines.
  public static func readTokens(_ path: String) throws(SwiftCompressError) -> RawSamples {
    if path.hasSuffix(".safetensors") { return try readSafetensorsTokens(path) }
    let data = try contents(path)
    var ids: [[Int]] = []
    var labels: [String] = []
    var lineNumber = 0
    for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
      lineNumber += 1
      if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
      guard let object = try? JSONParser.parse(Array(line)) else {
        throw .invalidFile(path: path, reason: "line \(lineNumber) is not JSON; --tokens takes JSON lines of id lists")
      }
      let list = object.arrayValue ?? object["input_ids"]?.arrayValue
      guard let list, let row = integers(list) else {
        throw .invalidFile(
          path: path,
          reason: "line \(lineNumber) is not a list of integer ids (or an object with an \"input_ids\" list)")
      }
      guard !row.isEmpty else { throw .invalidFile(path: path, reason: "line \(lineNumber) is an empty list of ids") }
      ids.append(row)
      labels.append("line \(lineNumber)")
    }
    guard !ids.isEmpty else {
      throw .invalidFile(path: path, reason: "holds no samples; write one JSON list of token ids per line")
    }
    return RawSamples(path: path, format: .jsonTokens, texts: [], ids: ids, labels: labels)
  }

  static func readSafetensorsTokens(_ path: String) throws(SwiftCompressError) -> RawSamples {
    let file: Checkpoint
    do {
      file = try Checkpoint.open(path)
    } catch {
      throw .invalidFile(path: path, reason: error.localizedDescription)
    }
    guard file.tensors.count == 1, let tensor = file.tensors.first, tensor.info.shape.count == 2,
      tensor.info.dtype == .i32 || tensor.info.dtype == .i64
    else {
      throw .invalidFile(
        path: path, reason: "must hold exactly one I32 or I64 tensor of shape [samples, length] (the token ids)")
    }
    let (rows, length) = (tensor.info.shape[0], tensor.info.shape[1])
    guard rows > 0, length > 0 else { throw .invalidFile(path: path, reason: "holds no samples (its tensor is empty)") }
    let bytes = file.bytes(of: tensor)
    var ids: [[Int]] = []
    for r in 0..<rows {
      var row = [Int](repeating: 0, count: length)
      for c in 0..<length {
        let i = r * length + c
        row[c] =
          tensor.info.dtype == .i32
          ? Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
          : Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
      }
      ids.append(row)
    }
    return RawSamples(
      path: path, format: .safetensorsTokens, texts: [], ids: ids, labels: (0..<rows).map { "row \($0)" })
  }

  /// The sorted indices of `count` of `total` items drawn with `seed` (all when `count` is nil or
  /// not smaller than `total`).
  public static func draw(_ count: Int?, of total: Int, seed: UInt64) -> [Int] {
    guard let count, count < total else { return Array(0..<total) }
    var generator = SampleDrawGenerator(seed: seed)
    var indices = Array(0..<total)
    for i in 0..<count {
      let j = i + Int(generator.next() % UInt64(total - i))
      indices.swapAt(i, j)
    }
    return indices[0..<count].sorted()
  }

  /// The samples to compute on: drawn, tokenized with `encode` (text formats), cut to `seqLen`
  /// (truncated or packed) and to the model's `maxPositions` (truncated, with a warning), checked
  /// against `vocabularySize`.
  public static func prepare(
    _ raw: RawSamples, options: SamplingOptions, vocabularySize: Int, maxPositions: Int?,
    limitName: String = "the model's max_position_embeddings", encode: (String) -> [Int]
  ) throws(SwiftCompressError) -> EvaluationSamples {
    var warnings: [String] = []
    var limit = options.seqLen
    if let max = maxPositions, max > 0, limit.map({ $0 > max }) ?? false {
      warnings.append(
        "--seq-len \(limit!) is longer than \(limitName) \(max): samples are cut to \(max) tokens"
      )
      limit = max
    }
    var sequences: [[Int]] = []
    var labels: [String] = []
    if options.pack {
      guard let length = limit else {
        throw .invalidOption(option: "--pack", reason: "needs --seq-len, the length of the packed samples")
      }
      var stream: [Int] = []
      for i in 0..<raw.count {
        let row = raw.ids.isEmpty ? encode(raw.texts[i]) : raw.ids[i]
        try check(row, label: raw.labels[i], path: raw.path, vocabularySize: vocabularySize)
        stream += row
      }
      let pieces = stream.count / length
      guard pieces > 0 else {
        throw .invalidFile(
          path: raw.path,
          reason: "holds \(Format.count(stream.count, "token")), fewer than one packed sample of --seq-len \(length)")
      }
      for i in draw(options.samples, of: pieces, seed: options.seed) {
        sequences.append(Array(stream[(i * length)..<((i + 1) * length)]))
        labels.append("packed sample \(i)")
      }
    } else {
      var longest = 0
      for i in draw(options.samples, of: raw.count, seed: options.seed) {
        var row = raw.ids.isEmpty ? encode(raw.texts[i]) : raw.ids[i]
        try check(row, label: raw.labels[i], path: raw.path, vocabularySize: vocabularySize)
        guard !row.isEmpty else { continue }
        longest = max(longest, row.count)
        if let limit, row.count > limit { row.removeLast(row.count - limit) }
        sequences.append(row)
        labels.append(raw.labels[i])
      }
      if let max = maxPositions, max > 0, options.seqLen == nil, longest > max {
        warnings.append(
          "samples up to \(longest) tokens are longer than \(limitName) \(max): they are truncated to \(max) tokens"
        )
        sequences = sequences.map { $0.count > max ? Array($0[0..<max]) : $0 }
      }
      guard !sequences.isEmpty else {
        throw .invalidFile(path: raw.path, reason: "holds no samples with tokens")
      }
    }
    let converted = sequences.map { $0.map { Int32($0) } }
    let info = DataInfo(
      file: raw.path, format: raw.format, fileSamples: raw.count, samples: converted.count,
      tokens: converted.reduce(0) { $0 + $1.count }, mode: options.pack ? "pack" : "truncate", seqLen: limit,
      seed: options.seed, tokenHash: tokenHash(converted))
    return EvaluationSamples(sequences: converted, labels: labels, info: info, warnings: warnings)
  }

  /// CRC-32 of each sequence's length then ids, as little-endian Int64, in hex.
  public static func tokenHash(_ sequences: [[Int32]]) -> String {
    var bytes: [UInt8] = []
    for sequence in sequences {
      for value in [Int64(sequence.count)] + sequence.map(Int64.init) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
      }
    }
    return bytes.withUnsafeBytes { Manifest.hexCRC($0) }
  }

  static func check(_ ids: [Int], label: String, path: String, vocabularySize: Int) throws(SwiftCompressError) {
    if let bad = ids.first(where: { $0 < 0 || $0 >= vocabularySize || $0 > Int(Int32.max) }) {
      throw .invalidFile(
        path: path,
        reason:
          "sample at \(label) holds token id \(bad), outside the model's vocabulary of \(vocabularySize) ids (0..<\(vocabularySize)); tokenize with the model's own tokenizer"
      )
    }
  }

  static func contents(_ path: String) throws(SwiftCompressError) -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw .invalidFile(path: path, reason: "does not exist")
    }
    guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
      throw .invalidFile(path: path, reason: "cannot be read as a file")
    }
    return data
  }

  static func jsonText(_ line: String) -> String? {
    guard line.first == "{",
      let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      let text = object["text"] as? String
    else { return nil }
    return text
  }

  /// The integers of `list`; nil when an item is not an integer (a boolean, a fraction, a string).
  static func integers(_ list: [JSONValue]) -> [Int]? {
    var result: [Int] = []
    result.reserveCapacity(list.count)
    for item in list {
      guard case .number(let text) = item, let number = Int(text) else { return nil }
      result.append(number)
    }
    return result
  }
}

/// SplitMix64 (Steele, Lea and Flood 2014), the generator of the `--samples` draw.
public struct SampleDrawGenerator: RandomNumberGenerator, Sendable {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
