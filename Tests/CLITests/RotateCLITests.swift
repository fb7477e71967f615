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
