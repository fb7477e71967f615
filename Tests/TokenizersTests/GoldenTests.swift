import CheckpointIO
import Foundation
import TestSupport
import Testing
import Tokenizers

// Token-exact tests against the Rust `tokenizers` library (Python binding 0.23.3): the ids of every line of
// Fixtures/text/corpus.txt (2,400 lines) by each fixture tokenizer, written by
// Scripts/reference/make_tokenizer_fixtures.py into Fixtures/golden/tokenizers/<name>.jsonl. Exact equality:
// one differing id fails the test.

let fixtureTokenizers = ["llama3-bpe", "gpt2-bpe", "qwen2-bpe", "llama2-spm", "mistral-spm", "bert-wordpiece"]
let byteLevelTokenizers = ["llama3-bpe", "gpt2-bpe", "qwen2-bpe"]
let corpusLineCount = 2400

/// The corpus lines: split on "\n" only (lines hold "\r", U+2028, U+0085 and other separators).
let corpusLines: [String] = {
  let data = FileManager.default.contents(atPath: fixture("text/corpus.txt")) ?? Data()
  var lines = Array(data).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map {
    String(decoding: $0, as: UTF8.self)
  }
  if lines.last == "" { lines.removeLast() }
  return lines
}()

struct GoldenRecord {
  var line: Int
  var ids: [Int]
  var idsNoSpecial: [Int]?
  var truncated: (maxLength: Int, ids: [Int])?
  var decoded: String?
  var decodedSkip: String?
}

struct Golden {
  var header: JSONValue
  var records: [GoldenRecord]
}

func ints(_ value: JSONValue?) -> [Int]? {
  value?.arrayValue?.map { Int($0.uint64Value!) }
}

func loadGolden(_ name: String) throws -> Golden {
  let data = try #require(FileManager.default.contents(atPath: fixture("golden/tokenizers/\(name).jsonl")))
  let lines = Array(data).split(separator: UInt8(ascii: "\n"))
  let header = try JSONParser.parse(Array(lines[0]))
  var records: [GoldenRecord] = []
  for line in lines.dropFirst() {
    let v = try JSONParser.parse(Array(line))
    var record = GoldenRecord(line: Int(v["line"]!.uint64Value!), ids: ints(v["ids"])!)
    record.idsNoSpecial = ints(v["ids_no_special"])
    if let t = v["truncated"] {
      record.truncated = (Int(t["max_length"]!.uint64Value!), ints(t["ids"])!)
    }
    record.decoded = v["decoded"]?.stringValue
    record.decodedSkip = v["decoded_skip"]?.stringValue
    records.append(record)
  }
  return Golden(header: header, records: records)
}

func loadFixtureTokenizer(_ name: String) throws -> Tokenizer {
  try Tokenizer(contentsOf: fixture("tokenizers/\(name)/tokenizer.json"))
}

func describe(_ line: String) -> String {
  line.unicodeScalars.map { $0.value < 0x20 || $0.value > 0x7E ? "\\u{\(String($0.value, radix: 16))}" : "\($0)" }
    .joined()
}

@Suite struct GoldenTests {
  @Test func corpusHasTheExpectedLines() {
    #expect(corpusLines.count == corpusLineCount)
    // Distinct as scalars (Swift's String equality would merge the NFC and NFD forms of a line).
    #expect(Set(corpusLines.map { Array($0.utf8) }).count == corpusLines.count)
  }

  /// 2,400 of 2,400 corpus lines per tokenizer, with special tokens.
  @Test(arguments: fixtureTokenizers)
  func everyCorpusLineIsTokenExact(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    let golden = try loadGolden(name)
    #expect(golden.records.count == corpusLineCount)
    var exact = 0
    var failures: [String] = []
    for record in golden.records {
      let ids = tokenizer.encode(corpusLines[record.line])
      if ids == record.ids {
        exact += 1
      } else if failures.count < 5 {
        failures.append("line \(record.line) \(describe(corpusLines[record.line])): \(ids) != \(record.ids)")
      }
    }
    #expect(
      exact == corpusLineCount, "\(name): \(exact)/\(golden.records.count) exact\n\(failures.joined(separator: "\n"))")
  }

  @Test(arguments: fixtureTokenizers)
  func withoutSpecialTokensAndTruncated(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    var checkedPlain = 0
    var checkedTruncated = 0
    for record in try loadGolden(name).records {
      let line = corpusLines[record.line]
      if let expected = record.idsNoSpecial {
        #expect(tokenizer.encode(line, addSpecialTokens: false) == expected, "line \(record.line)")
        checkedPlain += 1
      }
      if let (maxLength, expected) = record.truncated {
        let ids = tokenizer.encode(line, maxLength: maxLength)
        #expect(ids == expected, "line \(record.line) max_length \(maxLength)")
        #expect(ids.count <= maxLength)
        checkedTruncated += 1
      }
    }
    #expect(checkedPlain == 480)
    #expect(checkedTruncated == 343)
  }

  @Test(arguments: fixtureTokenizers)
  func decodeMatchesTheLibrary(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    var checked = 0
    for record in try loadGolden(name).records {
      guard let decoded = record.decoded, let decodedSkip = record.decodedSkip else { continue }
      // Compared as UTF-8 bytes, not with String's canonical equivalence.
      #expect(Array(tokenizer.decode(record.ids).utf8) == Array(decoded.utf8), "line \(record.line)")
      #expect(
        Array(tokenizer.decode(record.ids, skipSpecialTokens: true).utf8) == Array(decodedSkip.utf8),
        "line \(record.line)")
      checked += 1
    }
    #expect(checked == 240)
  }

  @Test(arguments: fixtureTokenizers)
  func vocabularySizeMatchesTheLibrary(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    let expected = try #require(try loadGolden(name).header["vocabulary_size"]?.uint64Value)
    #expect(tokenizer.vocabularySize == Int(expected))
    #expect(tokenizer.vocabularySize <= 1024)
  }

  /// Byte-level BPE is lossless: decode(encode(x)) == x for every corpus line, except in gpt2-bpe the lines
  /// with the added token `<|fim_prefix|>`, whose `rstrip` takes the spaces after it into the token.
  @Test(arguments: byteLevelTokenizers)
  func byteLevelRoundTrip(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    var exact = 0
    let lines = corpusLines.filter { name != "gpt2-bpe" || !$0.contains("<|fim_prefix|>") }
    #expect(lines.count == (name == "gpt2-bpe" ? 2374 : 2400))
    for line in lines {
      let back = tokenizer.decode(tokenizer.encode(line, addSpecialTokens: false))
      // Qwen2 normalizes to NFC first: the round trip gives the NFC text.
      let expected = name == "qwen2-bpe" ? line.precomposedStringWithCanonicalMapping : line
      if Array(back.utf8) == Array(expected.utf8) { exact += 1 }
    }
    #expect(exact == lines.count)
  }
}

@Suite struct FuzzTests {
  /// 1,500 seeded random texts of edge-case pieces (line breaks, contractions, every letter and number
  /// category, scalars newer than Oniguruma's tables, controls, emoji, added-token strings): the ids of all six
  /// tokenizers equal the library's (Fixtures/golden/tokenizers/fuzz.jsonl).
  @Test(arguments: fixtureTokenizers)
  func fuzzTextsAreTokenExact(name: String) throws {
    let tokenizer = try loadFixtureTokenizer(name)
    let data = try #require(FileManager.default.contents(atPath: fixture("golden/tokenizers/fuzz.jsonl")))
    let lines = Array(data).split(separator: UInt8(ascii: "\n")).dropFirst()
    var exact = 0
    var failures: [String] = []
    for line in lines {
      let record = try JSONParser.parse(Array(line))
      let text = record["text"]!.stringValue!
      let expected = ints(record["ids"]![name])!
      let ids = tokenizer.encode(text)
      if ids == expected {
        exact += 1
      } else if failures.count < 5 {
        failures.append("\(describe(text)): \(ids) != \(expected)")
      }
    }
    #expect(lines.count == 1500)
    #expect(exact == 1500, "\(name): \(exact)/1500\n\(failures.joined(separator: "\n"))")
  }
}
