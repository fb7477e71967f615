import CheckpointIO
import Foundation
import TestSupport
import Testing

/// One malformed fixture and the rule it breaks (Fixtures/malformed/expected.json).
struct MalformedCase: Sendable, CustomTestStringConvertible {
  var file: String
  var rule: String
  var tensor: String?
  var testDescription: String { file }

  static let all: [MalformedCase] = {
    guard let data = FileManager.default.contents(atPath: fixture("malformed/expected.json")),
      let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
    else { return [] }
    return list.map {
      MalformedCase(file: $0["file"] as! String, rule: $0["rule"] as! String, tensor: $0["tensor"] as? String)
    }
  }()
}

@Suite("Committed fixtures")
struct FixtureTests {
  @Test func fixturesMatchTheirChecksums() throws {
    let result = try runProcess("/bin/sh", ["-c", "cd '\(fixturesRoot)' && sha256sum --check --quiet SHA256SUMS"])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
  }

  @Test func everyRuleHasAMalformedFixture() {
    let covered = Set(MalformedCase.all.map(\.rule))
    let uncovered = ValidationRule.allCases.filter { !covered.contains($0.rawValue) && !$0.isValueRule }
    #expect(uncovered.isEmpty, "rules without a fixture: \(uncovered)")
  }

  @Test(arguments: MalformedCase.all)
  func malformedFixtureIsRejectedWithItsRule(_ malformed: MalformedCase) throws {
    let path = fixture("malformed/" + malformed.file)
    let problems: [ValidationProblem]
    if malformed.file.hasSuffix(".safetensors") {
      problems = try SafeTensorsFile.validate(path: path).problems
    } else {
      problems = try Checkpoint.validate(path).problems
    }
    #expect(problems.first?.rule.rawValue == malformed.rule, "\(problems)")
    if let tensor = malformed.tensor { #expect(problems.first?.tensor == tensor) }
    #expect(throws: CheckpointError.self) { _ = try Checkpoint.open(path) }
  }

  /// Values written by numpy/ml_dtypes, read and converted by this library, equal the
  /// float32 values ml_dtypes computed, bit for bit (NaN payloads aside).
  @Test func everyDTypeConvertsToTheReferenceFloat32() throws {
    let values = try SafeTensorsFile(path: fixture("dtypes/all-dtypes.safetensors"))
    let expected = try SafeTensorsFile(path: fixture("dtypes/expected-f32.safetensors"))
    #expect(Set(values.tensors.map(\.dtype)) == Set(DType.allCases))
    for tensor in values.tensors {
      let reference = try #require(expected.tensor(named: tensor.name))
      #expect(reference.shape == tensor.shape, "\(tensor.name)")
      let got = Float32Conversion.floats(values.bytes(of: tensor), dtype: tensor.dtype, count: tensor.elementCount)
      let want = Float32Conversion.floats(expected.bytes(of: reference), dtype: .f32, count: reference.elementCount)
      var mismatches = 0
      for (a, b) in zip(got, want) where !(a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)) {
        mismatches += 1
      }
      #expect(mismatches == 0, "\(tensor.name) (\(tensor.dtype.rawValue)): \(mismatches) values differ from ml_dtypes")
    }
  }

  /// numpy's float16 and ml_dtypes' bfloat16 conversions of the F32 Llama equal ours.
  @Test(arguments: [(DType.f16, "tiny-llama-f16"), (DType.bf16, "tiny-llama-bf16")])
  func roundingToHalfPrecisionMatchesTheReference(_ dtype: DType, _ folder: String) throws {
    let source = try Checkpoint.open(fixture("tiny-llama-f32"))
    let reference = try Checkpoint.open(fixture(folder))
    for tensor in source.tensors {
      let other = try #require(reference.tensor(named: tensor.name))
      let floats = Float32Conversion.floats(source.bytes(of: tensor), dtype: .f32, count: tensor.info.elementCount)
      var encoded = [UInt8](repeating: 0, count: tensor.info.elementCount * 2)
      floats.withUnsafeBufferPointer { src in
        encoded.withUnsafeMutableBytes { _ = Float32Conversion.encode(src, as: dtype, into: $0) }
      }
      #expect(encoded == Array(reference.bytes(of: other)), "\(tensor.name)")
    }
  }

  @Test func shardedCheckpointHoldsTheSameTensorsAsTheSingleFile() throws {
    let sharded = try Checkpoint.open(fixture("tiny-llama-sharded"))
    let single = try Checkpoint.open(fixture("tiny-llama-f16"))
    #expect(sharded.layout == .sharded)
    #expect(sharded.files.count > 1)
    #expect(Set(sharded.tensors.map(\.name)) == Set(single.tensors.map(\.name)))
    for tensor in sharded.tensors {
      let other = try #require(single.tensor(named: tensor.name))
      #expect(Array(sharded.bytes(of: tensor)) == Array(single.bytes(of: other)))
    }
    #expect(sharded.auxiliaryFiles.contains("config.json"))
    #expect(!sharded.auxiliaryFiles.contains("model.safetensors.index.json"))
  }

  @Test func folderListingFindsNestedAuxiliaryFiles() throws {
    let bert = try Checkpoint.open(fixture("tiny-bert"))
    #expect(bert.layout == .folder)
    #expect(bert.auxiliaryFiles.contains("1_Pooling/config.json"))
    #expect(bert.auxiliaryFiles.contains("vocab.txt"))
    #expect(bert.tensor(named: "embeddings.position_ids")?.info.dtype == .i64)
    let file = try Checkpoint.open(fixture("tiny-bert/model.safetensors"))
    #expect(file.layout == .file)
    #expect(file.auxiliaryFiles.isEmpty)
  }

  @Test func aFolderWithoutWeightsIsNotACheckpoint() throws {
    let folder = TemporaryFolder()
    _ = FileManager.default.createFile(atPath: folder.file("config.json"), contents: Data("{}".utf8))
    do {
      _ = try Checkpoint.open(folder.path)
      Issue.record("opened a folder without weights")
    } catch {
      #expect(error.category == .inputNotFound)
      #expect(error.errorDescription?.contains("config.json") == true)
    }
  }
}

@Suite("FP8 encoding")
struct E4M3EncodingTests {
  /// Every code decodes and re-encodes to itself; values between two neighbours go to
  /// the nearer one, ties to the even code; the range saturates at 448.
  @Test func encodeIsTheInverseOfDecodeAndRoundsToNearestEven() {
    let table = Float32Conversion.e4m3Table
    for code in 0..<256 where !table[code].isNaN {
      #expect(Float32Conversion.e4m3Code(table[code]) == UInt8(code), "code \(code)")
    }
    for code in 0..<0x7E {
      let (low, high) = (table[code], table[code + 1])
      let middle = (low + high) / 2
      let even = code % 2 == 0 ? code : code + 1
      #expect(Float32Conversion.e4m3Code(middle) == UInt8(even), "tie between codes \(code) and \(code + 1)")
      #expect(Float32Conversion.e4m3Code(middle.nextDown) == UInt8(code))
      #expect(Float32Conversion.e4m3Code(middle.nextUp) == UInt8(code + 1))
      #expect(Float32Conversion.e4m3Code(-middle.nextUp) == UInt8(code + 1) | 0x80)
    }
    #expect(Float32Conversion.e4m3Code(1000) == 0x7E)
    #expect(Float32Conversion.e4m3Code(-.infinity) == 0xFE)
    #expect(Float32Conversion.e4m3Code(.nan) & 0x7F == 0x7F)
  }
}
