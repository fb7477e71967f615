import CheckpointIO
import Foundation
import TestSupport
import Testing

@Suite("Strict JSON parser")
struct JSONParserTests {
  func parse(_ text: String) throws -> JSONValue {
    try JSONParser.parse(Array(text.utf8))
  }

  @Test func parsesNestedValuesAndKeepsMemberOrderAndDuplicates() throws {
    let value = try parse(#" { "b": [1, 2.5e3, -0.0, true, false, null], "a": {"x": "y"}, "b": "again" } "#)
    let members = try #require(value.members)
    #expect(members.map(\.key) == ["b", "a", "b"])
    #expect(value["b"] == .array([.number("1"), .number("2.5e3"), .number("-0.0"), .bool(true), .bool(false), .null]))
    #expect(value["a"]?["x"] == .string("y"))
  }

  @Test func integersStayExactAt64Bits() throws {
    let value = try parse("[18446744073709551615, 9007199254740993, 18446744073709551616]")
    let items = try #require(value.arrayValue)
    #expect(items[0].uint64Value == UInt64.max)
    #expect(items[1].uint64Value == 9_007_199_254_740_993)  // not representable as a Double
    #expect(items[2].uint64Value == nil)  // too large for 64 bits
  }

  @Test func decodesEscapesAndSurrogatePairs() throws {
    let value = try parse(#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00""#)
    #expect(value == .string("a\"b\\c/d\u{08}\u{0C}\n\r\té😀"))
  }

  @Test(
    "rejects what RFC 8259 rejects",
    arguments: [
      "", "{", "}", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "1e", "+1", "-", "tru", "nul", "'a'", "{a:1}",
      "\"\u{01}\"", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12g4\"", "[1] 2",
      "// c\n1", "{\"a\" 1}", "[1 2]", "NaN", "Infinity", "\"unterminated",
    ])
  func rejects(_ text: String) {
    #expect(throws: JSONSyntaxError.self) { try parse(text) }
  }

  @Test func rejectsInvalidUTF8InStrings() {
    let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
    #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(bytes) }
  }

  @Test func limitsNestingDepthInsteadOfOverflowingTheStack() throws {
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    #expect(throws: JSONSyntaxError.self) { try parse(deep) }
    let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
    #expect(try parse(ok).arrayValue != nil)
  }

  @Test func quotedRoundTripsThroughTheParser() throws {
    var rng = SplitMix64(seed: 7)
    for _ in 0..<200 {
      let scalars = (0..<Int(rng.next() % 12)).compactMap { _ -> Unicode.Scalar? in
        let pick = rng.next() % 4
        let value: UInt32 =
          switch pick {
          case 0: UInt32(rng.next() % 0x20)
          case 1: UInt32(0x20 + rng.next() % 0x5F)
          case 2: UInt32(0xA0 + rng.next() % 0xD700)
          default: UInt32(0x10000 + rng.next() % 0xFFFF)
          }
        return Unicode.Scalar(value)
      }
      var string = ""
      string.unicodeScalars.append(contentsOf: scalars)
      for ascii in [false, true] {
        let text = JSONText.quoted(string, asciiOnly: ascii)
        if ascii { #expect(text.unicodeScalars.allSatisfy { $0.value < 0x7F }) }
        #expect(try parse(text) == .string(string))
      }
    }
  }
}

@Suite("Python-compatible JSON output")
struct PrettyJSONTests {
  /// Every JSON file of the fixtures was written by Python's json.dumps(indent=2,
  /// sort_keys=True) + "\n"; parsing and re-writing gives the same bytes.
  @Test func prettyReproducesPythonOutputByteForByte() throws {
    let files = [
      "tiny-llama-f32/config.json", "tiny-llama-f32/generation_config.json",
      "tiny-llama-sharded/model.safetensors.index.json",
      "tiny-bert/config.json", "tiny-bert/modules.json", "tiny-bert/1_Pooling/config.json",
      "tiny-bert/config_sentence_transformers.json",
    ]
    for file in files {
      let data = try #require(FileManager.default.contents(atPath: fixture(file)))
      let value = try JSONParser.parse(Array(data))
      #expect(JSONText.pretty(value) == String(decoding: data, as: UTF8.self), "\(file)")
    }
  }

  @Test func prettyEscapesNonASCIIAndSortsByCodePoint() throws {
    let value = try JSONParser.parse(Array(#"{"é": "ü😀", "b": [], "a": {}, "Z": null}"#.utf8))
    #expect(
      JSONText.pretty(value)
        == "{\n  \"Z\": null,\n  \"a\": {},\n  \"b\": [],\n  \"\\u00e9\": \"\\u00fc\\ud83d\\ude00\"\n}\n")
  }

  @Test func settingReplacesOrAppends() throws {
    let value = try JSONParser.parse(Array(#"{"a": 1}"#.utf8))
    #expect(value.setting("a", to: .number("2"))?["a"] == .number("2"))
    #expect(value.setting("b", to: .null)?.members?.map(\.key) == ["a", "b"])
    #expect(JSONValue.array([]).setting("a", to: .null) == nil)
  }
}
