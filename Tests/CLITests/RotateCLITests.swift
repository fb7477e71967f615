import Foundation
import TestSupport
import Testing

@Suite("rotate command")
struct RotateCLITests {
  @Test func rotatesAndCopiesTheFilesBeside() throws {
    let folder = TemporaryFolder()
    let out = folder.file("rotated")
    let run = try swiftcompress("rotate", fixture("models/llama"), out, "--seed", "3", "--json")
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("\"identifier\" : \"rotate\"") || run.stdout.contains("\"identifier\":\"rotate\""))
    #expect(run.stdout.contains("\\\"seed\\\":3") || run.stdout.contains("\"seed\":3"), "\(run.stdout.prefix(2000))")
    for file in [
      "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors",
    ] {
      #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(file)")
    }
  }

  @Test func bertIsRefusedWithExit65() throws {
    let folder = TemporaryFolder()
    let run = try swiftcompress("rotate", fixture("models/bert"), folder.file("out"))
    #expect(run.status == 65)
    #expect(run.stderr.contains("architecture 'BertModel' cannot be rotated"), "\(run.stderr)")
    #expect(run.stdout.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
  }
}

extension RotateCLITests {
  /// `quantize --rotate hadamard:S` writes what `rotate --seed S` then `quantize` write (the
  /// same weight bytes), names the original input in its report and leaves no rotated copy.
  @Test func quantizeRotatesFirst() throws {
    let folder = TemporaryFolder()
    let model = fixture("models/llama-tied")
    let once = try swiftcompress(
      "quantize", model, folder.file("once"), "--scheme", "MXFP4A16", "--rotate", "hadamard:5", "--json")
    #expect(once.status == 0, "\(once.stderr)")
    #expect(once.stderr.contains("the input was rotated first (swiftcompress rotate --seed 5"), "\(once.stderr)")
    #expect(once.stdout.contains(model))
    let rotated = try swiftcompress("rotate", model, folder.file("rotated"), "--seed", "5", "-q")
    #expect(rotated.status == 0, "\(rotated.stderr)")
    let twice = try swiftcompress(
      "quantize", folder.file("rotated"), folder.file("twice"), "--scheme", "MXFP4A16", "-q")
    #expect(twice.status == 0, "\(twice.stderr)")
    let a = try #require(FileManager.default.contents(atPath: folder.file("once/model.safetensors")))
    let b = try #require(FileManager.default.contents(atPath: folder.file("twice/model.safetensors")))
    #expect(a == b)
    let left = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains("rotated-") }
    #expect(left.isEmpty, "\(left)")
    let bad = try swiftcompress("quantize", model, folder.file("bad"), "--scheme", "MXFP4A16", "--rotate", "random")
    #expect(bad.status == 64)
  }
}
