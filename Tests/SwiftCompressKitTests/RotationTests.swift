import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// `rotate` (RotatePass) on every decoder fixture: the rotated model computes the original's
/// logits on the forward goldens' three sequences (7, 16 and 33 tokens).
///
/// Tolerance: in exact arithmetic the logits are equal. In float32, each rotated weight is
/// rounded once more (the fast transform adds log2(64) = 6 roundings per value, the folded
/// norm one) and the forward pass sums in another order, so the logits move by a few ulps
/// times the depth: we measure max|rotated - original| / max|original| (printed) and require
/// it under 1e-5, ten times the largest measured (see docs/rotation.md). A wrong sign, a
/// missed norm or a rotation applied on the wrong side moves the logits by 1e-1 or more (docs/rotation.md: 0.46 and 0.95).
@Suite struct RotationTests {
  static let tolerance: Float = 1e-5

  /// Rotates fixture `name` into `folder`, returning the output path.
  static func rotate(_ name: String, seed: UInt64 = 7, into folder: TemporaryFolder) throws -> String {
    let out = folder.file("rotated")
    _ = try Compressor.run(
      pass: try RotatePass(configuration: .init(seed: seed)),
      options: CompressionOptions(
        input: fixture("models/\(name)"), output: out, selection: try TensorSelection(), command: "rotate"))
    return out
  }

  static func logits(_ path: String, _ batch: TokenBatch) throws -> [Float] {
    let model = try ForwardModels.open(path)
    let hidden = try model.finalHiddenStates(batch, observer: nil)
    return try model.logits(hidden, rows: 0..<hidden.rows)
  }

  static func floats(_ checkpoint: Checkpoint, _ name: String) throws -> [Float] {
    let tensor = try #require(checkpoint.tensor(named: name), "\(name)")
    return Float32Conversion.floats(
      checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
  }

  @Test(arguments: ForwardTests.decoders)
  func rotatedModelComputesTheSameLogits(_ name: String) throws {
    let folder = TemporaryFolder()
    let out = try Self.rotate(name, into: folder)
    let batch = try ForwardTests.Golden(name).batch
    let original = try Self.logits(fixture("models/\(name)"), batch)
    let rotated = try Self.logits(out, batch)
    let d = ForwardTests.relativeDifference(rotated[...], original[...])
    print("rotate \(name): logits max relative difference \(d)")
    #expect(d <= Self.tolerance, "\(name): \(d)")

    // The weights did change: the rotation is not the identity, the norms are ones.
    let before = try Checkpoint.open(fixture("models/\(name)"))
    let after = try Checkpoint.open(out)
    let embedding = ForwardTests.relativeDifference(
      try Self.floats(after, "model.embed_tokens.weight")[...],
      try Self.floats(before, "model.embed_tokens.weight")[...])
    #expect(embedding > 0.1)
    #expect(try Self.floats(after, "model.norm.weight").allSatisfy { $0 == 1 })
    #expect(try Self.floats(after, "model.layers.1.input_layernorm.weight").allSatisfy { $0 == 1 })
    #expect(after.tensor(named: "lm_head.weight") != nil)
    let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
    #expect(config.contains("\"tie_word_embeddings\": false"))
    #expect(FileManager.default.fileExists(atPath: out + "/tokenizer.json"))
    let record = try #require(after.metadata?[RotatePass.metadataKey])
    #expect(record.contains("\"seed\":7") && record.contains("\"untied_head\":\(name == "llama-tied")"))
  }

  /// The same seed gives the same bytes; another seed another rotation of the same function.
  @Test func theSeedDecides() throws {
    let (a, b, c) = (TemporaryFolder(), TemporaryFolder(), TemporaryFolder())
    let first = try Checkpoint.open(try Self.rotate("qwen2", seed: 1, into: a))
    let again = try Checkpoint.open(try Self.rotate("qwen2", seed: 1, into: b))
    let other = try Checkpoint.open(try Self.rotate("qwen2", seed: 2, into: c))
    let name = "model.layers.0.self_attn.v_proj.bias"
    #expect(try Self.floats(first, name) == Self.floats(again, name))
    #expect(try Self.floats(first, name) != Self.floats(other, name))
  }

  @Test func otherArchitecturesAreRefusedByName() throws {
    let folder = TemporaryFolder()
    do {
      _ = try Compressor.run(
        pass: try RotatePass(),
        options: CompressionOptions(
          input: fixture("models/bert"), output: folder.file("out"), selection: try TensorSelection(),
          command: "rotate"))
      Issue.record("BERT was rotated")
    } catch let error as SwiftCompressError {
      #expect(error.category == .invalidInput)
      let message = error.localizedDescription
      #expect(message.contains("BertModel") && message.contains("cannot be rotated"))
      for architecture in RotatePass.architectures { #expect(message.contains(architecture)) }
    }
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
  }
}
