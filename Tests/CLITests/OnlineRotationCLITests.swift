import Foundation
import TestSupport
import Testing

/// `quantize --rotate block-hadamard:B` end to end: the rotation is undone by every reader
/// (diff, decompress, evaluate), verify warns about transformers, and bad input is refused
/// with nothing written.
@Suite(.serialized) struct OnlineRotationCLITests {
  static let llama = fixture("models/llama")
  static let tokens = fixture("golden/calibrated/evaluation-tokens.llama.jsonl")
  static let calibration = fixture("golden/calibrated/calibration-tokens.llama.jsonl")

  static func json(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
  }

  static func meanKLD(_ candidate: String) throws -> Double {
    let run = try swiftcompress("evaluate", llama, candidate, "--tokens", tokens, "--json")
    #expect(run.status == 0, "\(run.stderr)")
    let decoder = json(run.stdout)["decoder"] as? [String: Any]
    return (decoder?["kld"] as? [String: Any])?["mean"] as? Double ?? .nan
  }

  /// The largest relative error of `diff a b` over the tensors both hold.
  static func maxRelativeError(_ a: String, _ b: String, expectSuccess: Bool = true) throws -> Double {
    let run = try swiftcompress("diff", a, b, "--json")
    if expectSuccess { #expect(run.status == 0, "\(run.stderr)") }
    let tensors = json(run.stdout)["tensors"] as? [[String: Any]] ?? []
    return tensors.compactMap { ($0["metrics"] as? [String: Any])?["relative_frobenius_error"] as? Double }.max()
      ?? .nan
  }

  /// The rotation is applied by every reader: the output's weights compare with the original's
  /// at quantization error (W4A16 g32: ~0.1), its decompressed model too, and evaluate's KL
  /// divergence is that of a quantized model. The same checkpoint with transform_config removed
  /// (what transformers computes, weights W R read as W) is far off: this is what the
  /// rotation-undoing guards against.
  @Test func readersUndoTheRotation() throws {
    let folder = TemporaryFolder()
    let out = folder.file("w4")
    let run = try swiftcompress(
      "quantize", Self.llama, out, "--scheme", "W4A16", "--group-size", "32", "--rotate", "block-hadamard:16", "-q")
    #expect(run.status == 0, "\(run.stderr)")
    #expect(try Self.maxRelativeError(Self.llama, out) < 0.2)
    let dense = folder.file("dense")
    #expect(try swiftcompress("decompress", out, dense, "-q").status == 0)
    #expect(try Self.maxRelativeError(Self.llama, dense) < 0.2)
    let rotated = try Self.meanKLD(out)
    #expect(rotated < 0.03, "\(rotated)")
    #expect(try Self.meanKLD(dense) == rotated)

    let verify = try swiftcompress("verify", out)
    #expect(verify.status == 0, "\(verify.stderr)")
    #expect(verify.stderr.contains("transformers 5.x does not"), "\(verify.stderr)")

    // Without transform_config, the rotated weights are read as they are.
    let config = out + "/config.json"
    var object = Self.json(try String(contentsOfFile: config, encoding: .utf8))
    var quantization = try #require(object["quantization_config"] as? [String: Any])
    quantization["transform_config"] = [String: Any]()
    object["quantization_config"] = quantization
    try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: config))
    #expect(try Self.maxRelativeError(Self.llama, out, expectSuccess: false) > 1)
    let wrong = try Self.meanKLD(out)
    #expect(wrong > 10 * rotated, "\(wrong) vs \(rotated)")
  }

  /// GPTQ calibrates on the rotated weights and rotated activations: better than round to
  /// nearest with the same rotation (measured 0.0074 vs 0.0148, docs/rotation.md).
  @Test func gptqWithTheRotationBeatsRoundToNearest() throws {
    let folder = TemporaryFolder()
    let common = ["--scheme", "W4A16", "--group-size", "32", "--rotate", "block-hadamard:16", "-q"]
    var run = try runProcess(swiftcompressExecutable, ["quantize", Self.llama, folder.file("rtn")] + common)
    #expect(run.status == 0, "\(run.stderr)")
    run = try runProcess(
      swiftcompressExecutable,
      ["quantize", Self.llama, folder.file("gptq")] + common + ["--method", "gptq", "--tokens", Self.calibration])
    #expect(run.status == 0, "\(run.stderr)")
    let rtn = try Self.meanKLD(folder.file("rtn"))
    let gptq = try Self.meanKLD(folder.file("gptq"))
    #expect(gptq < 0.8 * rtn, "gptq \(gptq), rtn \(rtn)")
  }

  struct Refusal: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var status: Int32
    var message: String
    var testDescription: String { arguments.joined(separator: " ") }
  }

  static let refusals: [Refusal] = [
    Refusal(
      arguments: ["--scheme", "MXFP4A16", "--rotate", "block-hadamard:24"], status: 64,
      message: "one of 16, 32, 64, 128"),
    Refusal(
      arguments: ["--scheme", "MXFP4A16", "--rotate", "block-hadamard:256"], status: 64, message: "power of two"),
    Refusal(arguments: ["--scheme", "MXFP4A16", "--rotate", "block-hadamard"], status: 64, message: "--rotate"),
    Refusal(
      arguments: ["--scheme", "W4A16", "--group-size", "24", "--rotate", "block-hadamard:16"], status: 64,
      message: "do not nest"),
    Refusal(
      arguments: ["--scheme", "W4A16", "--group-size", "32", "--rotate", "block-hadamard:16", "--exclude", "mlp"],
      status: 64, message: "Use --ignore MODULE"),
    Refusal(
      arguments: ["--scheme", "MXFP4A16", "--rotate", "block-hadamard:128"], status: 65,
      message: "is not a multiple of the rotation block 128"),
  ]

  @Test(arguments: refusals)
  func badInputIsRefusedAndNothingWritten(_ refusal: Refusal) throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    let run = try runProcess(swiftcompressExecutable, ["quantize", Self.llama, out] + refusal.arguments)
    #expect(run.status == refusal.status, "\(run.stderr)")
    #expect(run.stderr.contains(refusal.message), "\(run.stderr)")
    #expect(run.stdout.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: out))
    #expect((try FileManager.default.contentsOfDirectory(atPath: folder.path)).isEmpty)
  }

  /// Factorized weights: the rotation applies to whole linear modules, not to their factors.
  @Test func factorsAreRefused() throws {
    let folder = TemporaryFolder()
    var run = try swiftcompress("factorize", Self.llama, folder.file("factors"), "--rank", "32", "-q")
    #expect(run.status == 0, "\(run.stderr)")
    run = try swiftcompress(
      "quantize", folder.file("factors"), folder.file("out"), "--scheme", "MXFP4A16", "--rotate", "block-hadamard:16")
    #expect(run.status == 65, "\(run.stderr)")
    #expect(run.stderr.contains("is a factor of a factorized weight"), "\(run.stderr)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
  }

  /// A lone .safetensors file has no config.json to record transform_config in.
  @Test func aFileWithoutConfigIsRefused() throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    let run = try swiftcompress(
      "quantize", fixture("tiny-llama-f32/model.safetensors"), out, "--scheme", "MXFP4A16", "--rotate",
      "block-hadamard:32")
    #expect(run.status == 65, "\(run.stderr)")
    #expect(run.stderr.contains("has no config.json"), "\(run.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  /// The effective recipe a rotated run writes replays to the same bytes; a recipe that would
  /// rotate only some modules, or chain the rotation after another stage, is refused (64).
  @Test func recipes() throws {
    let folder = TemporaryFolder()
    let out = folder.file("w4")
    var run = try swiftcompress(
      "quantize", Self.llama, out, "--scheme", "MXFP4A16", "--rotate", "block-hadamard:32", "-q")
    #expect(run.status == 0, "\(run.stderr)")
    run = try swiftcompress("run", out + "/swiftcompress-recipe.yaml", Self.llama, folder.file("replay"), "-q")
    #expect(run.status == 0, "\(run.stderr)")
    #expect(
      FileManager.default.contents(atPath: out + "/model.safetensors")
        == FileManager.default.contents(atPath: folder.file("replay/model.safetensors")))
    let chained = folder.file("chained.yaml")
    try """
    stages:
      - prune:
          method: magnitude
          sparsity: 0.25
      - quantize:
          scheme: MXFP4A16
          rotation_block: 32
    """.write(toFile: chained, atomically: true, encoding: .utf8)
    run = try swiftcompress("run", chained, Self.llama, folder.file("chained"))
    #expect(run.status == 64, "\(run.stderr)")
    #expect(run.stderr.contains("must be the first stage"), "\(run.stderr)")
    let targeted = folder.file("targeted.yaml")
    try """
    stages:
      - quantize:
          scheme: MXFP4A16
          rotation_block: 32
          targets: ['mlp']
    """.write(toFile: targeted, atomically: true, encoding: .utf8)
    run = try swiftcompress("run", targeted, Self.llama, folder.file("targeted"))
    #expect(run.status == 64, "\(run.stderr)")
    #expect(run.stderr.contains("not targets or exclude"), "\(run.stderr)")
    #expect(!FileManager.default.fileExists(atPath: folder.file("chained")))
    #expect(!FileManager.default.fileExists(atPath: folder.file("targeted")))
  }
}
