import CheckpointIO
import Foundation
import TestSupport
import Testing

/// The repository's Fuzz/ folder (the libFuzzer target, its corpus and regressions).
private let fuzzRoot = (fixturesRoot as NSString).deletingLastPathComponent + "/Fuzz"

/// The files of `folder` under Fuzz/, sorted; empty when the folder does not exist.
private func fuzzFiles(_ folder: String) -> [String] {
  let path = fuzzRoot + "/" + folder
  let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
  return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { path + "/" + $0 }
}

private func contents(_ path: String) throws -> [UInt8] {
  Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Validates `bytes` in memory, and when they are accepted checks that every tensor's
/// byte range lies inside them, contiguous from the data start to the end.
private func validateInMemory(_ bytes: [UInt8]) -> ParsedHeader {
  let header = bytes.withUnsafeBytes { SafeTensorsFile.parseHeader(bytes: $0) }
  if header.problems.isEmpty {
    var end = header.dataStart
    for tensor in header.tensors {
      #expect(header.dataStart + tensor.dataOffsets.lowerBound == end)
      end = header.dataStart + tensor.dataOffsets.upperBound
    }
    #expect(end == bytes.count)
  }
  _ = bytes.withUnsafeBytes { Checkpoint.validateIndex(bytes: $0) }
  return header
}

@Suite("In-memory validation (the fuzzer's entry points)")
struct InMemoryValidationTests {
  @Test(arguments: BrokenFile.all)
  func inMemoryProblemsEqualTheMappedFileProblems(_ broken: BrokenFile) throws {
    let folder = TemporaryFolder()
    let path = folder.file("broken.safetensors")
    _ = FileManager.default.createFile(atPath: path, contents: Data(broken.bytes))
    let fromDisk = try SafeTensorsFile.validate(path: path).problems
    let inMemory = broken.bytes.withUnsafeBytes { SafeTensorsFile.validate(bytes: $0, file: path) }
    #expect(inMemory == fromDisk)
    #expect(inMemory.first?.rule == broken.rule)
  }

  @Test(arguments: MalformedCase.all.filter { $0.file.hasSuffix(".safetensors") })
  func malformedFixtureIsRejectedInMemory(_ malformed: MalformedCase) throws {
    let path = fixture("malformed/" + malformed.file)
    let inMemory = try contents(path).withUnsafeBytes { SafeTensorsFile.validate(bytes: $0, file: path) }
    #expect(inMemory == (try SafeTensorsFile.validate(path: path).problems))
    #expect(inMemory.first?.rule.rawValue == malformed.rule)
  }

  @Test func validFileIsAcceptedInMemoryWithTheSameTensors() throws {
    let path = fixture("dtypes/all-dtypes.safetensors")
    let header = validateInMemory(try contents(path))
    #expect(header.problems.isEmpty)
    let file = try SafeTensorsFile(path: path)
    #expect(header.tensors == file.tensors)
    #expect(header.dataStart == file.dataStart)
    #expect(header.metadata == file.metadata)
  }

  @Test func emptyInputIsTooSmall() {
    let problems = SafeTensorsFile.validate(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
    #expect(problems.map(\.rule) == [.fileTooSmall])
    #expect(problems.first?.file == "<memory>")
  }

  /// The index checks that need only the index's own bytes find the same first problem
  /// as opening the folder; the checks that need the shards find nothing in memory.
  @Test(arguments: MalformedCase.all.filter { $0.file.hasPrefix("index-") })
  func malformedIndexIsCheckedInMemory(_ malformed: MalformedCase) throws {
    let path = fixture("malformed/" + malformed.file + "/model.safetensors.index.json")
    let inMemory = try contents(path).withUnsafeBytes { Checkpoint.validateIndex(bytes: $0, file: path) }
    let indexOnly: Set<ValidationRule> = [
      .indexNotJSON, .indexMissingWeightMap, .indexDuplicateTensor, .indexPathEscape,
    ]
    let rule = try #require(ValidationRule(rawValue: malformed.rule))
    if indexOnly.contains(rule) {
      #expect(inMemory.first?.rule == rule, "\(inMemory)")
      #expect(inMemory.allSatisfy { $0.file == path })
    } else {
      #expect(inMemory.isEmpty, "\(inMemory)")
    }
  }

  @Test func validIndexHasNoProblemsInMemory() throws {
    let bytes = try contents(fixture("tiny-llama-sharded/model.safetensors.index.json"))
    #expect(bytes.withUnsafeBytes { Checkpoint.validateIndex(bytes: $0) }.isEmpty)
  }

  /// Every input of the committed fuzz corpus (Fuzz/corpus) goes through both
  /// validators without trapping, and accepted files keep their tensors inside.
  @Test func fuzzCorpusNeverTraps() throws {
    let files = fuzzFiles("corpus/safetensors")
    #expect(files.count > 20)
    var accepted = 0
    for file in files where validateInMemory(try contents(file)).problems.isEmpty {
      accepted += 1
    }
    #expect(accepted > 0)
  }
}
