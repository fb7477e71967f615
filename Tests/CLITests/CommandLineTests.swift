import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

@Suite("Messages and output")
struct MessageTests {
  /// Things that are not tensors are not called tensors.
  @Test func messagesNameTheFileFolderOrCheckpoint() throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let decompress = try swiftcompress("decompress", model, folder.file("d"))
    #expect(decompress.status == 65)
    #expect(decompress.stderr.contains("checkpoint '\(model)'"), "\(decompress.stderr)")
    #expect(try swiftcompress("quantize", model, folder.file("q"), "--scheme", "W8A16", "-q").status == 0)
    for command in [["quantize", "--scheme", "W8A16"], ["prune", "--method", "magnitude", "--sparsity", "0.5"]] {
      let again = try runProcess(
        swiftcompressExecutable, [command[0], folder.file("q"), folder.file("x")] + command.dropFirst())
      #expect(again.status == 65)
      #expect(again.stderr.contains("checkpoint '\(folder.file("q"))'"), "\(again.stderr)")
    }
    let notPart = try swiftcompress("merge", folder.file("m"), folder.file("q"))
    #expect(notPart.status == 65)
    #expect(notPart.stderr.contains("folder '\(folder.file("q"))'"), "\(notPart.stderr)")
    for result in [decompress, notPart] { #expect(!result.stderr.contains("tensor '"), "\(result.stderr)") }
    // A part that does not exist is an input not found.
    let nowhere = try swiftcompress("merge", folder.file("m"), folder.file("nowhere"))
    #expect(nowhere.status == 66, "\(nowhere.stderr)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("x")))
  }

  /// One tensor, one file, one problem, one pruned weight: singular nouns.
  @Test func oneOfAThingIsSingular() throws {
    let folder = TemporaryFolder()
    let input = folder.file("one.safetensors")
    try writeF32(input, [("layer.weight", [4, 4], (0..<16).map { Float($0) - 7.5 })])
    let convert = try swiftcompress("convert", input, folder.file("c"), "--dtype", "bf16")
    #expect(convert.status == 0, "\(convert.stderr)")
    #expect(convert.stdout.contains("1 of 1 tensor transformed, 0 kept"), "\(convert.stdout)")
    #expect(convert.stdout.contains("(1 weight file)"), "\(convert.stdout)")
    let plan = try swiftcompress("convert", input, folder.file("p"), "--dtype", "bf16", "--dry-run")
    #expect(plan.stdout.contains("plan: 1 of 1 tensor transformed, 0 kept") && plan.stdout.contains(" in 1 file\n"))
    let prune = try swiftcompress(
      "prune", input, folder.file("r"), "--method", "magnitude", "--sparsity", "0.0625")
    #expect(prune.status == 0, "\(prune.stderr)")
    #expect(prune.stdout.contains("1 weight pruned"), "\(prune.stdout)")
    let inspect = try swiftcompress("inspect", input)
    #expect(
      inspect.stdout.contains("\n1 tensor, 16 parameters, 64 bytes (64 B) in 1 file, file\n"), "\(inspect.stdout)")
    #expect(inspect.stdout.contains("F32: 1 tensor, 16 parameters"))
    let verify = try swiftcompress("verify", input)
    #expect(verify.stdout.contains("file, 1 file, 1 tensor\n"), "\(verify.stdout)")
    let broken = try swiftcompress("verify", fixture("malformed/data-past-end.safetensors"))
    #expect(broken.stdout.hasPrefix("1 problem in "), "\(broken.stdout)")
    let diff = try swiftcompress("diff", input, input)
    #expect(diff.stdout.contains("1 tensor compared (1 float, 0 exact), 1 equal, 0 differ;"), "\(diff.stdout)")
    let markdown = try String(contentsOfFile: folder.file("c/" + Report.markdownFileName), encoding: .utf8)
    #expect(markdown.contains("file, 1 file, 1 tensor,") && !markdown.contains("file(s)"), "\(markdown)")
  }

  /// decompress counts bits per weight over the dense weights the compressed tensors
  /// stand for: its "before" is the compressing run's "after", its "after" 32 for F32.
  @Test(arguments: [
    ["quantize", "--scheme", "W4A16"], ["prune", "--method", "nm", "--pattern", "2:4", "--sparse-format", "bitmask"],
    ["factorize", "--rank", "8"],
  ])
  func decompressCountsBitsOverTheDenseWeights(_ command: [String]) throws {
    let folder = TemporaryFolder()
    let model = fixture("tiny-llama-f32")
    let compress = try runProcess(
      swiftcompressExecutable, [command[0], model, folder.file("c")] + command.dropFirst() + ["--json"])
    #expect(compress.status == 0, "\(compress.stderr)")
    let compressed = try JSONDecoder().decode(Report.self, from: Data(compress.stdout.utf8))
    let json = try swiftcompress("decompress", folder.file("c"), folder.file("d"), "--dtype", "F32", "--json")
    #expect(json.status == 0, "\(json.stderr)")
    let report = try JSONDecoder().decode(Report.self, from: Data(json.stdout.utf8))
    #expect(report.totals.parameters == compressed.totals.parameters)
    #expect(report.totals.bitsPerWeightBefore == compressed.totals.bitsPerWeightAfter)
    #expect(report.totals.bitsPerWeightAfter == 32)
    let text = try swiftcompress("decompress", folder.file("c"), folder.file("t"), "--dtype", "F32")
    let expected = "\(Format.fixed(compressed.totals.bitsPerWeightAfter, 2)) -> 32.00 bits/weight"
    #expect(text.stdout.contains(expected), "\(text.stdout)")
    let plan = try swiftcompress("decompress", folder.file("c"), folder.file("p"), "--dtype", "F32", "--dry-run")
    #expect(plan.stdout.contains(expected), "\(plan.stdout)")
  }

}
