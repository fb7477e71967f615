import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// A test pass that splits each selected matrix into its top and bottom halves (two
/// outputs), reconstructing densely so the driver measures the (zero) error itself.
struct SplitRowsPass: CompressionPass {
  struct Configuration: Codable, Sendable, Equatable {}
  static let identifier = "test-split-rows"
  static let summary = "split matrices into two halves of rows"
  let configuration = Configuration()
  init(configuration: Configuration = Configuration()) {}

  func plan(_ tensor: TensorDescriptor) -> TensorDecision {
    guard tensor.shape.count == 2, tensor.shape[0] % 2 == 0 else { return .keep(reason: "odd row count") }
    let half = [tensor.shape[0] / 2, tensor.shape[1]]
    return .transform(
      outputs: [
        PlannedTensor(name: tensor.name + ".top", dtype: .f32, shape: half),
        PlannedTensor(name: tensor.name + ".bottom", dtype: .f32, shape: half),
      ], note: "split")
  }

  func transform(_ input: TensorInput, outputs: [PlannedTensor]) -> TransformResult {
    let values = input.floats()
    let middle = values.count / 2
    let top = values[..<middle].withUnsafeBytes { Array($0) }
    let bottom = values[middle...].withUnsafeBytes { Array($0) }
    return TransformResult(outputs: [.owned(top), .owned(bottom)], reconstruction: .dense(values))
  }

  var outputMetadata: [String: String] { ["split_by": "test"] }
}

/// A pass that breaks its own plan, to check the driver refuses and writes nothing.
struct LyingPass: CompressionPass {
  struct Configuration: Codable, Sendable, Equatable {}
  static let identifier = "test-lying"
  static let summary = "returns the wrong number of bytes"
  let configuration = Configuration()
  init(configuration: Configuration = Configuration()) {}
  func plan(_ tensor: TensorDescriptor) -> TensorDecision {
    .transform(outputs: [PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)], note: nil)
  }
  func transform(_ input: TensorInput, outputs: [PlannedTensor]) -> TransformResult {
    TransformResult(outputs: [.owned([1, 2, 3])], reconstruction: .notApplicable)
  }
}

@Suite("Pass protocol")
struct PassProtocolTests {
  @Test func aPassMayEmitSeveralOutputsAcrossShards() throws {
    let folder = TemporaryFolder()
    let out = folder.file("split")
    let options = CompressionOptions(
      input: fixture("tiny-llama-f32"), output: out, selection: try TensorSelection(), maxShardSize: 100_000,
      command: "test")
    let report = try Compressor.run(pass: SplitRowsPass(), options: options)
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let output = try Checkpoint.open(out)
    #expect(output.layout == .sharded)
    #expect(output.metadata?["split_by"] == "test")
    #expect(output.metadata?["format"] == "pt")
    for entry in report.tensors where entry.action == "transformed" {
      let original = Array(input.bytes(of: input.tensor(named: entry.name)!))
      let top = try #require(output.tensor(named: entry.name + ".top"))
      let bottom = try #require(output.tensor(named: entry.name + ".bottom"))
      #expect(Array(output.bytes(of: top)) + Array(output.bytes(of: bottom)) == original)
      #expect(entry.outputs.count == 2)
      // Exact figures; the energies are measured too (the error energy is zero).
      let metrics = try #require(entry.metrics)
      #expect(
        ErrorMetrics(
          relativeFrobeniusError: metrics.relativeFrobeniusError, sqnrDB: metrics.sqnrDB,
          cosineSimilarity: metrics.cosineSimilarity, maxAbsError: metrics.maxAbsError,
          nonFiniteCount: metrics.nonFiniteCount) == .exact)
      #expect(metrics.errorEnergy == 0 && (metrics.referenceEnergy ?? 0) > 0)
      #expect(entry.reason == "split")
    }
    #expect(output.tensor(named: "model.norm.weight") != nil)  // kept tensors pass through
  }

  @Test func aPassThatBreaksItsPlanIsStoppedAndNothingIsWritten() throws {
    let folder = TemporaryFolder()
    let options = CompressionOptions(
      input: fixture("tiny-llama-f32"), output: folder.file("o"), selection: try TensorSelection(), command: "test")
    #expect(throws: SwiftCompressError.self) { _ = try Compressor.run(pass: LyingPass(), options: options) }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
  }

  @Test func planIsCompleteBeforeAnythingIsWritten() throws {
    let checkpoint = try Checkpoint.open(fixture("tiny-llama-sharded"))
    let options = CompressionOptions(
      input: fixture("tiny-llama-sharded"), output: "/unused", selection: try TensorSelection(), maxShardSize: 1 << 20,
      command: "test")
    let plan = try Compressor.plan(checkpoint, pass: SplitRowsPass(), options: options)
    #expect(plan.entries.count == checkpoint.tensors.count)
    let outputs = plan.entries.flatMap(\.outputs)
    #expect(Set(outputs.map(\.name)).count == outputs.count)
    #expect(plan.layout.totalSize == outputs.reduce(0) { $0 + $1.byteCount! })
    #expect(!FileManager.default.fileExists(atPath: "/unused"))
  }

  @Test func outputNameClashesAreRejectedAtPlanTime() throws {
    struct Clash: CompressionPass {
      struct Configuration: Codable, Sendable, Equatable {}
      static let identifier = "test-clash"
      static let summary = ""
      let configuration = Configuration()
      init(configuration: Configuration = Configuration()) {}
      func plan(_ tensor: TensorDescriptor) -> TensorDecision {
        .transform(outputs: [PlannedTensor(name: "same", dtype: .f32, shape: [1])], note: nil)
      }
      func transform(_ input: TensorInput, outputs: [PlannedTensor]) -> TransformResult {
        TransformResult(outputs: [.owned([0, 0, 0, 0])], reconstruction: .notApplicable)
      }
    }
    let checkpoint = try Checkpoint.open(fixture("tiny-llama-f32"))
    let options = CompressionOptions(input: "", output: "", selection: try TensorSelection(), command: "test")
    #expect(throws: SwiftCompressError.self) { _ = try Compressor.plan(checkpoint, pass: Clash(), options: options) }
  }

  @Test(arguments: [
    ("model.embed_tokens.weight", true), ("embeddings.word_embeddings.weight", true), ("transformer.wte.weight", true),
    ("bert.embeddings.position_embeddings.weight", true), ("model.layers.0.mlp.up_proj.weight", false),
    ("lm_head.weight", false), ("embed", false),
  ])
  func embeddingDetection(_ name: String, _ expected: Bool) {
    #expect(TensorSelection.isEmbedding(name) == expected)
  }
}
