import CheckpointIO
import Foundation
import TestSupport
import Testing
import Tokenizers

/// A fixture's tokenizer.json with top-level components and model fields replaced.
func variantJSON(
  _ fixtureName: String, components: [JSONMember], modelFields: [JSONMember]
) throws -> [UInt8] {
  let data = try #require(FileManager.default.contents(atPath: fixture("tokenizers/\(fixtureName)/tokenizer.json")))
  var root = try JSONParser.parse(Array(data))
  for member in components { root = root.setting(member.key, to: member.value)! }
  var model = root["model"]!
  for member in modelFields { model = model.setting(member.key, to: member.value)! }
  root = root.setting("model", to: model)!
  return Array(JSONText.compact(root).utf8)
}

func replacing(_ fixtureName: String, _ key: String, with json: String) throws -> [UInt8] {
  try variantJSON(fixtureName, components: [JSONMember(key, try JSONParser.parse(Array(json.utf8)))], modelFields: [])
}

func unsupportedReason(_ json: [UInt8]) -> String? {
  do {
    _ = try Tokenizer(json: json, path: "variant.json")
    return nil
  } catch {
    guard case .unsupported(_, let reason) = error else { return "not unsupported: \(error)" }
    return reason
  }
}

@Suite struct ComponentTests {
  /// Components the six fixtures do not use, swapped into them; ids by tokenizers 0.23.3 in
  /// Fixtures/golden/tokenizers/variants.json (made by Scripts/reference/make_tokenizer_fixtures.py).
  @Test func variantsMatchTheLibrary() throws {
    let data = try #require(FileManager.default.contents(atPath: fixture("golden/tokenizers/variants.json")))
    let variants = try #require(try JSONParser.parse(Array(data))["variants"]?.arrayValue)
    #expect(variants.count == 26)
    for variant in variants {
      let name = variant["name"]!.stringValue!
      let json = try variantJSON(
        variant["fixture"]!.stringValue!, components: variant["components"]!.members!,
        modelFields: variant["model_fields"]!.members!)
      let tokenizer = try Tokenizer(json: json, path: name)
      let texts = variant["texts"]!.arrayValue!.map { $0.stringValue! }
      let expected = variant["ids"]!.arrayValue!.map { ints($0)! }
      let expectedPlain = variant["ids_no_special"]!.arrayValue!.map { ints($0)! }
      for (k, text) in texts.enumerated() {
        #expect(tokenizer.encode(text) == expected[k], "\(name): \(describe(text))")
        #expect(tokenizer.encode(text, addSpecialTokens: false) == expectedPlain[k], "\(name): \(describe(text))")
      }
    }
  }

  @Test func unsupportedComponentsAreRefusedWithTheSupportedList() throws {
    let cases: [(String, String, String, String)] = [
      ("gpt2-bpe", "normalizer", #"{"type": "Precompiled", "precompiled_charsmap": ""}"#, "normalizer \"Precompiled\""),
      ("gpt2-bpe", "pre_tokenizer", #"{"type": "FixedLength", "length": 5}"#, "pre-tokenizer \"FixedLength\""),
      ("gpt2-bpe", "post_processor", #"{"type": "Unknown"}"#, "post-processor \"Unknown\""),
      ("gpt2-bpe", "decoder", #"{"type": "CTC", "pad_token": "<pad>"}"#, "decoder \"CTC\""),
      ("gpt2-bpe", "model", #"{"type": "Unigram", "unk_id": 0, "vocab": [["a", 0.0]]}"#, "model \"Unigram\""),
      (
        "bert-wordpiece", "model", #"{"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}"#, "model \"WordLevel\""
      ),
      (
        "gpt2-bpe", "pre_tokenizer", #"{"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]}"#,
        "pre-tokenizer \"UnicodeScripts\""
      ),
    ]
    for (base, key, json, named) in cases {
      let reason = try #require(unsupportedReason(try replacing(base, key, with: json)))
      #expect(reason.contains(named), "\(reason)")
      #expect(reason.contains("supported:"), "\(reason)")
    }
    let dropout = try variantJSON(
      "gpt2-bpe", components: [], modelFields: [JSONMember("dropout", .number("0.1"))])
    #expect(unsupportedReason(dropout)?.contains("dropout") == true)
  }

  @Test func missingUnreadableAndInvalidFiles() throws {
    #expect(throws: TokenizerError.self) { try Tokenizer(contentsOf: "/nonexistent/tokenizer.json") }
    do {
      _ = try Tokenizer(contentsOf: "/nonexistent/tokenizer.json")
    } catch {
      guard case .unreadable(let path, let reason) = error else { Issue.record("\(error)"); return }
      #expect(path == "/nonexistent/tokenizer.json")
      #expect(reason.contains("no such file"))
    }
    func error(_ text: String) -> TokenizerError? {
      do {
        _ = try Tokenizer(json: Array(text.utf8), path: "t.json")
        return nil
      } catch { return error }
    }
    if case .unreadable = error("{\"model\": ") {} else { Issue.record("truncated JSON is unreadable") }
    if case .invalid = error("[1, 2]") {} else { Issue.record("a top-level array is invalid") }
    if case .invalid = error("{\"version\": \"1.0\"}") {} else { Issue.record("no model is invalid") }
    let badMerge = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}"#
    if case .invalid(_, let reason) = error(badMerge) {
      #expect(reason.contains("merge 0"))
    } else {
      Issue.record("a merge of unknown tokens is invalid")
    }
    let message = TokenizerError.invalid(path: "t.json", reason: "x").localizedDescription
    #expect(message.contains("t.json"))
  }

  /// Vocabulary lookups compare bytes, not Swift's canonical equivalence: "cafe" + U+0301 is not the token
  /// "café" (U+00E9). The library gives [2, 3] here: "cafe", then "##" + U+0301.
  @Test func tokensAreComparedByteForByte() throws {
    let json = """
      {"normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
       "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                 "max_input_chars_per_word": 100,
                 "vocab": {"[UNK]": 0, "caf\u{E9}": 1, "cafe": 2, "##\u{301}": 3}},
       "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true}}
      """
    let tokenizer = try Tokenizer(json: Array(json.utf8), path: "t.json")
    #expect(tokenizer.encode("cafe\u{301}") == [2, 3])
    #expect(tokenizer.encode("caf\u{E9}") == [1])
    #expect(tokenizer.id(of: "cafe\u{301}") == nil)
    #expect(Array(tokenizer.decode([2, 3]).utf8) == Array("cafe\u{301}".utf8))
  }

  @Test func publicHelpers() throws {
    let llama3 = try loadFixtureTokenizer("llama3-bpe")
    #expect(llama3.bosTokenId == llama3.id(of: "<|begin_of_text|>"))
    #expect(llama3.bosTokenId == 1019)
    #expect(llama3.kind == "BPE (byte-level, ignore_merges)")
    // tokenizers 0.23.3 with enable_truncation(max_length=m): m = 1 leaves only the special token; m = 0, below
    // the one special token, truncates nothing (the library's max_length - 1 wraps around).
    #expect(llama3.encode("", maxLength: 1) == [1019])
    #expect(llama3.encode("hello world", maxLength: 1) == [1019])
    #expect(llama3.encode("hello world", maxLength: 2) == [1019, 414])
    #expect(llama3.encode("hello world", maxLength: 0) == [1019, 414, 516])
    #expect(llama3.encode("hello world", addSpecialTokens: false, maxLength: 0) == [])
    let bert = try loadFixtureTokenizer("bert-wordpiece")
    #expect(bert.id(of: "[PAD]") == 0)
    #expect(bert.prefixTokenIds == [2])
    #expect(bert.suffixTokenIds == [3])
    #expect(bert.kind == "WordPiece")
    #expect(bert.encode("hello world", maxLength: 2) == [2, 3])
    #expect(bert.encode("hello world", maxLength: 3) == [2, 682, 3])
    #expect(bert.encode("hello world", maxLength: 1) == [2, 682, 721, 3])
    #expect(try loadFixtureTokenizer("llama2-spm").kind == "BPE (byte fallback)")
    let gpt2 = try loadFixtureTokenizer("gpt2-bpe")
    #expect(gpt2.bosTokenId == nil)
    #expect(gpt2.decode([gpt2.id(of: "<|endoftext|>")!], skipSpecialTokens: true) == "")
  }
}
