import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

@Suite("Pipeline driver")
struct PipelineTests {
  func options(
    _ input: String, _ output: String, include: [String] = [], exclude: [String] = [],
    maxShard: Int = CompressionOptions.defaultMaxShardSize
  ) throws -> CompressionOptions {
    CompressionOptions(
      input: input, output: output, selection: try TensorSelection(include: include, exclude: exclude),
      maxShardSize: maxShard, command: "test")
  }

  @Test func identityPassReproducesEveryTensorAndCopiesSideFiles() throws {
    let folder = TemporaryFolder()
    let out = folder.file("bert")
    let report = try Compressor.run(
      pass: IdentityPass(), options: try options(fixture("tiny-bert"), out, include: [".*"]))
    let input = try Checkpoint.open(fixture("tiny-bert"))
    let output = try Checkpoint.open(out)
    #expect(output.tensors.map(\.name) == input.tensors.map(\.name))
    for tensor in input.tensors {
      let written = try #require(output.tensor(named: tensor.name))
      #expect(written.info.dtype == tensor.info.dtype && written.info.shape == tensor.info.shape)
      #expect(Array(output.bytes(of: written)) == Array(input.bytes(of: tensor)))
    }
    #expect(output.metadata == input.metadata)
    for relative in input.auxiliaryFiles {
      #expect(
        FileManager.default.contentsEqual(atPath: fixture("tiny-bert/" + relative), andPath: out + "/" + relative),
        "\(relative)")
    }
    #expect(FileManager.default.fileExists(atPath: out + "/" + Report.jsonFileName))
    #expect(FileManager.default.fileExists(atPath: out + "/" + Report.markdownFileName))
    // position_ids is I64: never offered to a pass, whatever the patterns.
    let positions = try #require(report.tensors.first { $0.name == "embeddings.position_ids" })
    #expect(positions.action == "kept")
    #expect(report.totals.compressionRatio == 1)
    #expect(report.totals.metrics == .exact)
    // Nothing is left behind beside the output.
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["bert"])
  }

  @Test func defaultSelectionKeepsNormsBiasesAndEmbeddingsAndSaysWhy() throws {
    let folder = TemporaryFolder()
    let report = try Compressor.run(
      pass: try CastPass(configuration: .init(dtype: .bf16)),
      options: try options(fixture("tiny-llama-f32"), folder.file("o")))
    let byName = Dictionary(uniqueKeysWithValues: report.tensors.map { ($0.name, $0) })
    #expect(byName["model.embed_tokens.weight"]?.action == "kept")
    #expect(byName["model.embed_tokens.weight"]?.reason?.contains("embedding") == true)
    #expect(byName["model.norm.weight"]?.action == "kept")
    #expect(byName["model.norm.weight"]?.reason?.contains("1-D") == true)
    #expect(byName["model.layers.0.self_attn.q_proj.weight"]?.action == "transformed")
    #expect(byName["lm_head.weight"]?.action == "transformed")
    #expect(report.totals.transformed == 15)
    #expect(report.totals.kept == 6)
  }

  @Test func includeOverridesDefaultsAndExcludeWins() throws {
    let folder = TemporaryFolder()
    let report = try Compressor.run(
      pass: try CastPass(configuration: .init(dtype: .f16)),
      options: try options(
        fixture("tiny-llama-f32"), folder.file("o"), include: ["norm", "q_proj"], exclude: ["layers\\.1\\."]))
    let transformed = Set(report.tensors.filter { $0.action == "transformed" }.map(\.name))
    #expect(
      transformed == [
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight", "model.norm.weight",
      ])
    #expect(
      report.tensors.first { $0.name == "model.layers.1.self_attn.q_proj.weight" }?.reason?.contains("--exclude")
        == true)
  }

  /// The cast pass's metrics equal a straightforward Double computation over the
  /// values written. Tolerances: 1e-12 relative (both sum exact float products in
  /// double, in a different order).
  @Test func castMetricsMatchAnIndependentComputation() throws {
    let folder = TemporaryFolder()
    let out = folder.file("o")
    let report = try Compressor.run(
      pass: try CastPass(configuration: .init(dtype: .bf16)), options: try options(fixture("tiny-llama-f32"), out))
    let input = try Checkpoint.open(fixture("tiny-llama-f32"))
    let output = try Checkpoint.open(out)
    var totalError = 0.0
    var totalEnergy = 0.0
    for entry in report.tensors where entry.action == "transformed" {
      let a = input.tensor(named: entry.name)!
      let b = output.tensor(named: entry.name)!
      #expect(b.info.dtype == .bf16)
      let x = Float32Conversion.floats(input.bytes(of: a), dtype: .f32, count: a.info.elementCount)
      let y = Float32Conversion.floats(output.bytes(of: b), dtype: .bf16, count: b.info.elementCount)
      var err = 0.0, ref = 0.0, out2 = 0.0, dot = 0.0, maxAbs = 0.0
      for (p, q) in zip(x, y) {
        let (dp, dq) = (Double(p), Double(q))
        err += (dp - dq) * (dp - dq)
        ref += dp * dp
        out2 += dq * dq
        dot += dp * dq
        maxAbs = max(maxAbs, abs(dp - dq))
      }
      totalError += err
      totalEnergy += ref
      let m = try #require(entry.metrics)
      #expect(abs(m.relativeFrobeniusError - (err / ref).squareRoot()) <= 1e-12 * (err / ref).squareRoot())
      #expect(abs(m.sqnrDB! - 10 * log10(ref / err)) <= 1e-10)
      #expect(abs(m.cosineSimilarity - dot / (ref.squareRoot() * out2.squareRoot())) <= 1e-12)
      #expect(m.maxAbsError == Double(Float(maxAbs)))
      // BF16 keeps 8 significant bits: relative error about 2^-9 for smooth data.
      #expect(m.relativeFrobeniusError > 1e-4 && m.relativeFrobeniusError < 4e-3)
      #expect(entry.bitsPerWeightAfter == 16)
    }
    let totals = try #require(report.totals.metrics)
    #expect(abs(totals.relativeFrobeniusError - (totalError / totalEnergy).squareRoot()) <= 1e-12)
  }

  @Test func outputIsShardedWithATransformersStyleIndex() throws {
    let folder = TemporaryFolder()
    let out = folder.file("o")
    let report = try Compressor.run(
      pass: IdentityPass(), options: try options(fixture("tiny-llama-f16"), out, maxShard: 200_000))
    #expect(report.output.files.count > 1)
    let index = try #require(report.output.index)
    #expect(index == "model.safetensors.index.json")
    let checkpoint = try Checkpoint.open(out)
    #expect(checkpoint.layout == .sharded)
    #expect(checkpoint.files.allSatisfy { $0.dataByteCount <= 200_000 || $0.tensors.count == 1 })
    let json =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/" + index)))
      as! [String: Any]
    let total = (json["metadata"] as! [String: Any])["total_size"] as! Int
    #expect(total == checkpoint.tensorByteCount)
    #expect((json["weight_map"] as! [String: String]).count == checkpoint.tensors.count)
    // Resharding back into one file gives the original bytes.
    let back = folder.file("back")
    _ = try Compressor.run(pass: IdentityPass(), options: try options(out, back))
    #expect(
      FileManager.default.contentsEqual(
        atPath: back + "/model.safetensors", andPath: fixture("tiny-llama-f16/model.safetensors")))
  }

  @Test func runsAreByteIdentical() throws {
    let folder = TemporaryFolder()
    for name in ["a", "b"] {
      _ = try Compressor.run(
        pass: try CastPass(configuration: .init(dtype: .f16)),
        options: try options(fixture("tiny-llama-sharded"), folder.file(name), maxShard: 300_000))
    }
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.file("a")).filter {
      !$0.hasPrefix("swiftcompress-report")
    }
    #expect(files.count > 3)
    for file in files {
      #expect(
        FileManager.default.contentsEqual(atPath: folder.file("a/" + file), andPath: folder.file("b/" + file)),
        "\(file)")
    }
  }

  @Test func existingOutputIsRefusedUnlessForcedAndInvalidInputWritesNothing() throws {
    let folder = TemporaryFolder()
    let out = folder.file("o")
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
    #expect(throws: CheckpointError.outputExists(path: out)) {
      _ = try Compressor.run(pass: IdentityPass(), options: try options(fixture("tiny-llama-f32"), out))
    }
    var forced = try options(fixture("tiny-llama-f32"), out)
    forced.force = true
    _ = try Compressor.run(pass: IdentityPass(), options: forced)
    #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors"))

    let bad = folder.file("bad")
    #expect(throws: CheckpointError.self) {
      _ = try Compressor.run(pass: IdentityPass(), options: try options(fixture("malformed/index-shard-missing"), bad))
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["o"])
  }

  @Test func passRegistryBuildsPassesFromJSONAndListsKnownOnes() throws {
    let pass = try PassRegistry.make(identifier: "cast", configurationJSON: #"{"dtype":"F16"}"#)
    #expect((pass as? CastPass)?.configuration.dtype == .f16)
    #expect(
      throws: SwiftCompressError.unknownPass(
        "quantise",
        known: [
          "identity", "cast", "quantize", "prune", "factorize", "decompress", "lowrank-residual", "recipe", "rotate",
        ])
    ) {
      _ = try PassRegistry.make(identifier: "quantise", configurationJSON: "{}")
    }
    #expect(throws: SwiftCompressError.self) {
      _ = try PassRegistry.make(identifier: "cast", configurationJSON: #"{"dtype":"F8_E4M3"}"#)
    }
  }

  @Test func reportJSONFollowsTheDocumentedSchema() throws {
    let folder = TemporaryFolder()
    let out = folder.file("o")
    _ = try Compressor.run(
      pass: try CastPass(configuration: .init(dtype: .bf16)), options: try options(fixture("tiny-llama-f32"), out))
    let json =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/" + Report.jsonFileName)))
      as! [String: Any]
    #expect(json["schema"] as? String == "swiftcompress-report")
    #expect(json["schema_version"] as? Int == 1)
    for key in ["tool", "command", "input", "output", "pass", "selection", "tensors", "totals", "timing"] {
      #expect(json[key] != nil, "missing \(key)")
    }
    let tensors = json["tensors"] as! [[String: Any]]
    let kept = try #require(tensors.first { $0["action"] as? String == "kept" })
    #expect(kept["metrics"] is NSNull)
    let transformed = try #require(tensors.first { $0["action"] as? String == "transformed" })
    let metrics = transformed["metrics"] as! [String: Any]
    for key in ["relative_frobenius_error", "sqnr_db", "cosine_similarity", "max_abs_error", "non_finite_count"] {
      #expect(metrics[key] != nil, "missing metrics.\(key)")
    }
    for key in [
      "bytes_before", "bytes_after", "bits_per_weight_before", "bits_per_weight_after", "outputs", "shape", "dtype",
    ] {
      #expect(transformed[key] != nil, "missing tensors[].\(key)")
    }
    let totals = json["totals"] as! [String: Any]
    for key in ["compression_ratio", "bits_per_weight_after", "bytes_before", "bytes_after", "metrics"] {
      #expect(totals[key] != nil, "missing totals.\(key)")
    }
  }
}

@Suite("Config edits")
struct ConfigEditTests {
  @Test func castUpdatesTorchDTypeOnlyWhenEveryFloatTensorHasTheNewDType() throws {
    let folder = TemporaryFolder()
    let all = CompressionOptions(
      input: fixture("tiny-llama-f32"), output: folder.file("all"), selection: try TensorSelection(include: [".*"]),
      command: "test")
    let report = try Compressor.run(pass: try CastPass(configuration: .init(dtype: .bf16)), options: all)
    #expect(report.output.editedFiles == ["config.json"])
    #expect(!report.output.copiedFiles.contains("config.json"))
    let original = try JSONParser.parse(
      Array(FileManager.default.contents(atPath: fixture("tiny-llama-f32/config.json"))!))
    let edited = try JSONParser.parse(Array(FileManager.default.contents(atPath: folder.file("all/config.json"))!))
    #expect(edited["torch_dtype"] == .string("bfloat16"))
    #expect(edited.members?.count == original.members?.count)
    for member in original.members! where member.key != "torch_dtype" {
      #expect(edited[member.key] == member.value, "\(member.key)")
    }

    let mixed = CompressionOptions(
      input: fixture("tiny-llama-f32"), output: folder.file("mixed"), selection: try TensorSelection(), command: "test")
    let mixedReport = try Compressor.run(pass: try CastPass(configuration: .init(dtype: .bf16)), options: mixed)
    #expect(mixedReport.output.editedFiles.isEmpty)
    #expect(
      FileManager.default.contentsEqual(
        atPath: folder.file("mixed/config.json"), andPath: fixture("tiny-llama-f32/config.json")))
  }
}
