import CheckpointIO
import Foundation
import TestSupport
import Testing

/// One hand-built broken file per rule, so every rule is exercised even without the
/// committed fixtures; `MalformedFixtureTests` does the same from Fixtures/malformed.
struct BrokenFile: Sendable, CustomTestStringConvertible {
  var rule: ValidationRule
  var tensor: String?
  var bytes: [UInt8]
  var testDescription: String { rule.rawValue }

  static func make(
    _ rule: ValidationRule, tensor: String? = nil, header: String, data: [UInt8] = [], declared: UInt64? = nil
  )
    -> BrokenFile
  {
    var bytes: [UInt8] = []
    var length = declared ?? UInt64(header.utf8.count)
    for _ in 0..<8 {
      bytes.append(UInt8(truncatingIfNeeded: length))
      length >>= 8
    }
    return BrokenFile(rule: rule, tensor: tensor, bytes: bytes + Array(header.utf8) + data)
  }

  static func entry(_ name: String, _ dtype: String, _ shape: String, _ offsets: String) -> String {
    #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
  }

  static let all: [BrokenFile] = [
    BrokenFile(rule: .fileTooSmall, bytes: [1, 0, 0]),
    make(.headerTooLarge, header: "{}", declared: 100_000_001),
    make(.headerIncomplete, header: "{}", declared: 64),
    BrokenFile(rule: .headerNotUTF8, bytes: [4, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0xFF, 0xFE, 0x7D]),
    make(.headerStart, header: " {}"),
    make(.headerStart, header: "[]"),
    make(.headerNotJSON, header: "{\"a\":}"),
    make(.metadataNotStringMap, header: #"{"__metadata__":{"k":1}}"#),
    make(.entryNotObject, tensor: "w", header: #"{"w":[1,2]}"#),
    make(.missingDType, tensor: "w", header: #"{"w":{"shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
    make(.missingShape, tensor: "w", header: #"{"w":{"dtype":"U8","data_offsets":[0,1]}}"#, data: [0]),
    make(.missingDataOffsets, tensor: "w", header: #"{"w":{"dtype":"U8","shape":[1]}}"#, data: [0]),
    make(.unknownDType, tensor: "w", header: "{" + entry("w", "F33", "[1]", "[0,4]") + "}", data: [0, 0, 0, 0]),
    make(.invalidShape, tensor: "w", header: "{" + entry("w", "U8", "[-1]", "[0,1]") + "}", data: [0]),
    make(.invalidShape, tensor: "w", header: "{" + entry("w", "U8", "[1.5]", "[0,1]") + "}", data: [0]),
    make(.invalidDataOffsets, tensor: "w", header: "{" + entry("w", "U8", "[1]", "[0]") + "}", data: [0]),
    make(.offsetsReversed, tensor: "w", header: "{" + entry("w", "U8", "[0]", "[1,0]") + "}", data: [0]),
    make(
      .offsetsGap, tensor: "b",
      header: "{" + entry("a", "U8", "[1]", "[0,1]") + "," + entry("b", "U8", "[1]", "[2,3]") + "}",
      data: [0, 0, 0]),
    make(.offsetsGap, tensor: "a", header: "{" + entry("a", "U8", "[1]", "[1,2]") + "}", data: [0, 0]),
    make(
      .offsetsOverlap, tensor: "b",
      header: "{" + entry("a", "U8", "[2]", "[0,2]") + "," + entry("b", "U8", "[2]", "[1,3]") + "}", data: [0, 0, 0]),
    make(
      .sizeOverflow, tensor: "w", header: "{" + entry("w", "F32", "[4611686018427387904,4]", "[0,4]") + "}",
      data: [0, 0, 0, 0]),
    make(
      .sizeOverflow, tensor: "w", header: "{" + entry("w", "F64", "[2305843009213693952]", "[0,4]") + "}",
      data: [0, 0, 0, 0]),
    make(.sizeMismatch, tensor: "w", header: "{" + entry("w", "F32", "[2]", "[0,4]") + "}", data: [0, 0, 0, 0]),
    make(.subByteMisaligned, tensor: "w", header: "{" + entry("w", "F4", "[3]", "[0,2]") + "}", data: [0, 0]),
    make(.dataPastEnd, tensor: "w", header: "{" + entry("w", "F32", "[2]", "[0,8]") + "}", data: [0, 0, 0, 0]),
    make(.trailingBytes, header: "{" + entry("w", "U8", "[1]", "[0,1]") + "}", data: [0, 9]),
    make(
      .duplicateName, tensor: "w",
      header: "{" + entry("w", "U8", "[1]", "[0,1]") + "," + entry("w", "U8", "[1]", "[1,2]") + "}", data: [0, 0]),
  ]
}

@Suite("safetensors validation rules")
struct ValidationTests {
  @Test(arguments: BrokenFile.all)
  func eachBrokenFileIsRejectedWithItsOwnRule(_ broken: BrokenFile) throws {
    let folder = TemporaryFolder()
    let path = folder.file("broken.safetensors")
    _ = FileManager.default.createFile(atPath: path, contents: Data(broken.bytes))
    let (file, problems) = try SafeTensorsFile.validate(path: path)
    #expect(file == nil)
    #expect(problems.first?.rule == broken.rule, "problems: \(problems)")
    if let tensor = broken.tensor { #expect(problems.first?.tensor == tensor) }
    #expect(problems.allSatisfy { $0.file == path })
    do {
      _ = try SafeTensorsFile(path: path)
      Issue.record("opening \(broken.rule.rawValue) succeeded")
    } catch {
      #expect(error.category == .invalidInput)
      guard case .invalid(let problem) = error else {
        Issue.record("unexpected \(error)")
        return
      }
      #expect(problem.rule == broken.rule)
      // The message names the file, the rule and what to do.
      let message = error.errorDescription ?? ""
      #expect(message.contains(path) && message.contains(broken.rule.rawValue))
    }
  }

  @Test func everyFileLevelRuleHasABrokenFile() {
    let covered = Set(BrokenFile.all.map(\.rule))
    let fileRules = ValidationRule.allCases.filter {
      !$0.rawValue.hasPrefix("index-") && $0 != .tensorInTwoShards && !$0.isValueRule
    }
    #expect(Set(fileRules).subtracting(covered).isEmpty)
  }

  @Test func entryProblemsAreAllCollected() throws {
    let folder = TemporaryFolder()
    let path = folder.file("many.safetensors")
    let header =
      #"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,1]},"b":{"shape":[1],"data_offsets":[1,2]},"c":{"dtype":"U8","shape":[1]}}"#
    writeRawSafetensors(path, header: header, data: [0, 0])
    let (_, problems) = try SafeTensorsFile.validate(path: path)
    #expect(problems.map(\.rule) == [.unknownDType, .missingDType, .missingDataOffsets])
    #expect(problems.map(\.tensor) == ["a", "b", "c"])
  }

  @Test func missingFileIsNotFoundAndAFolderIsUnreadable() throws {
    let folder = TemporaryFolder()
    #expect(throws: CheckpointError.inputNotFound(path: folder.file("nope.safetensors"))) {
      _ = try SafeTensorsFile(path: folder.file("nope.safetensors"))
    }
    do {
      _ = try SafeTensorsFile(path: folder.path)
      Issue.record("opening a folder as a file succeeded")
    } catch {
      #expect(error.category == .inputNotFound)
    }
  }
}

@Suite("Corrupted files")
struct MutationTests {
  /// 3,000 seeded corruptions of a valid file's first bytes (header length and JSON):
  /// each either opens (and then every tensor's bytes lie inside the file) or is
  /// rejected with a rule; nothing traps.
  @Test func corruptedHeadersNeverCrashTheReader() throws {
    let original = Array(try Data(contentsOf: URL(fileURLWithPath: fixture("tiny-bert/model.safetensors"))))
    let headerEnd = 8 + Int(original[0]) + Int(original[1]) << 8 + Int(original[2]) << 16
    let folder = TemporaryFolder()
    let path = folder.file("mutant.safetensors")
    var rng = SplitMix64(seed: 2026)
    var rejected = 0
    for _ in 0..<3000 {
      var bytes = original
      for _ in 0..<(1 + Int(rng.next() % 4)) {
        let position = Int(rng.next() % UInt64(min(headerEnd, bytes.count - 1)))
        switch rng.next() % 4 {
        case 0: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
        case 1:
          let syntax = Array("{}[],:\"0123456789-e.".utf8)
          bytes[position] = syntax[Int(rng.next() % UInt64(syntax.count))]
        case 2: bytes.remove(at: position)
        default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: position)
        }
      }
      if rng.next() % 8 == 0 { bytes.removeLast(Int(rng.next() % 64)) }
      _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
      let (file, problems) = try SafeTensorsFile.validate(path: path)
      if let file {
        #expect(problems.isEmpty)
        for tensor in file.tensors {
          #expect(file.fileRange(of: tensor).upperBound <= bytes.count)
        }
      } else {
        #expect(!problems.isEmpty)
        rejected += 1
      }
    }
    #expect(rejected > 2000)  // almost every corruption is caught
  }
}
