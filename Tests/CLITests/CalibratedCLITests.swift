import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// The calibrated methods end to end on the fixture models: calibration samples drawn from the
/// test corpus (seed 0), quality measured by `evaluate` on a different draw (seed 1), against
/// the data-free method at the same size.
@Suite(.serialized) struct CalibratedCLITests {
  static let corpus = fixture("text/corpus.txt")
  static let llama = fixture("models/llama")
  static let bert = fixture("models/bert-st")
  static let calibration = ["--data", corpus, "--samples", "48", "--seq-len", "96"]
  static let held = ["--data", corpus, "--samples", "48", "--seed", "1", "--seq-len", "96"]

  /// Runs a command that writes `out`, expecting success.
  static func write(_ arguments: [String]) throws {
    let result = try runProcess(swiftcompressExecutable, arguments + ["--quiet"])
    #expect(result.status == 0, "\(arguments): \(result.stderr)")
  }

  /// Mean KL divergence (decoders) or mean embedding cosine (encoders) of `candidate` against `model`.
  static func quality(_ model: String, _ candidate: String) throws -> Double {
    let result = try runProcess(swiftcompressExecutable, ["evaluate", model, candidate] + held + ["--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
    if let decoder = report["decoder"] as? [String: Any], let kld = decoder["kld"] as? [String: Any] {
      return kld["mean"] as? Double ?? .nan
    }
    let encoder = report["encoder"] as? [String: Any] ?? [:]
    return encoder["cosine_mean"] as? Double ?? .nan
  }

  /// Every group of four consecutive inputs of every pruned weight holds at least two zeros.
  static func twoFourHolds(_ folder: String) throws -> Bool {
    let weights = try ModelWeights(path: folder)
    var checked = 0
    for tensor in weights.checkpoint.tensors
    where tensor.name.hasSuffix("proj.weight") || tensor.name.hasSuffix("dense.weight") {
      let shape = tensor.info.shape
      guard shape.count == 2, !tensor.name.contains("lm_head") else { continue }
      let values = try weights.floats(tensor.name)
      for g in stride(from: 0, to: values.count, by: 4) where values[g..<(g + 4)].filter({ $0 == 0 }).count < 2 {
        return false
      }
      checked += 1
    }
    return checked > 0
  }

  @Test func sparseGPTAndWandaBeatMagnitudeAtTwoFour() throws {
    let folder = TemporaryFolder()
    let (magnitude, sparsegpt, wanda) = (folder.file("magnitude"), folder.file("sparsegpt"), folder.file("wanda"))
    try Self.write(["prune", Self.llama, magnitude, "--method", "magnitude", "--pattern", "2:4"])
    try Self.write(["prune", Self.llama, sparsegpt, "--method", "sparsegpt", "--pattern", "2:4"] + Self.calibration)
    try Self.write(["prune", Self.llama, wanda, "--method", "wanda", "--pattern", "2:4"] + Self.calibration)
    #expect(try Self.twoFourHolds(sparsegpt))
    #expect(try Self.twoFourHolds(wanda))
    let (m, s, w) = (
      try Self.quality(Self.llama, magnitude), try Self.quality(Self.llama, sparsegpt),
      try Self.quality(Self.llama, wanda)
    )
    #expect(s < w && w < m, "KL: sparsegpt \(s), wanda \(w), magnitude \(m)")
  }

  /// The least-squares refit (`--refit ls`) against the methods' own values (the default, `none`):
  /// the same 2:4 mask and layout, a lower KL divergence on held-out text (measured on this
  /// draw: SparseGPT 2:4 and GPTQ W4A16 group 32 both lower).
  @Test func refitLowersTheKLOfSparseGPTAndGPTQ() throws {
    let folder = TemporaryFolder()
    for (name, arguments) in [
      ("sparsegpt", ["prune", Self.llama, "", "--method", "sparsegpt", "--pattern", "2:4"]),
      ("gptq", ["quantize", Self.llama, "", "--scheme", "W4A16", "--group-size", "32", "--method", "gptq"]),
    ] {
      let (own, refit) = (folder.file(name + "-none"), folder.file(name + "-ls"))
      var none = arguments + Self.calibration
      none[2] = own
      var ls = arguments + Self.calibration + ["--refit", "ls"]
      ls[2] = refit
      try Self.write(none)
      try Self.write(ls)
      if name == "sparsegpt" {
        #expect(try Self.twoFourHolds(refit))
        let a = try ModelWeights(path: own)
        let b = try ModelWeights(path: refit)
        let weight = "model.layers.0.mlp.down_proj.weight"
        #expect(try a.floats(weight).map { $0 == 0 } == b.floats(weight).map { $0 == 0 }, "the mask changed")
      }
      let (before, after) = (try Self.quality(Self.llama, own), try Self.quality(Self.llama, refit))
      print("\(name): KL \(before) -> \(after)")
      #expect(after < before, "\(name): KL with the refit \(after), without \(before)")
    }
  }

  /// GPTQ on the same grid as round-to-nearest: a lower KL divergence, the same layout (the
  /// same tensors, dtypes and shapes, so every loader reads both alike).
  @Test(arguments: [["W4A16", "--group-size", "32"], ["NVFP4A16"], ["MXFP4A16", "--scale-search", "mse"]])
  func gptqBeatsRoundToNearestInTheSameLayout(_ scheme: [String]) throws {
    let folder = TemporaryFolder()
    let (rtn, gptq) = (folder.file("rtn"), folder.file("gptq"))
    try Self.write(["quantize", Self.llama, rtn, "--scheme"] + scheme)
    try Self.write(["quantize", Self.llama, gptq, "--scheme"] + scheme + ["--method", "gptq"] + Self.calibration)
    let (r, g) = (try Self.quality(Self.llama, rtn), try Self.quality(Self.llama, gptq))
    #expect(g < 0.8 * r, "KL: gptq \(g), round to nearest \(r)")
    let (a, b) = (try Checkpoint.open(rtn), try Checkpoint.open(gptq))
    #expect(
      a.tensors.map { [$0.name, $0.info.dtype.rawValue, "\($0.info.shape)"] }
        == b.tensors.map {
          [$0.name, $0.info.dtype.rawValue, "\($0.info.shape)"]
        })
    let config = { (path: String) in try String(contentsOfFile: path + "/config.json", encoding: .utf8) }
    #expect(try config(rtn) == config(gptq))
    let report = try String(contentsOfFile: gptq + "/swiftcompress-report.json", encoding: .utf8)
    #expect(report.contains("gptq: 14 modules in 2 layers calibrated on 48 samples"))
  }

  @Test func sparseGPTOnAnEncoderKeepsEmbeddingsCloser() throws {
    let folder = TemporaryFolder()
    let (magnitude, sparsegpt) = (folder.file("magnitude"), folder.file("sparsegpt"))
    try Self.write(["prune", Self.bert, magnitude, "--method", "magnitude", "--sparsity", "0.5"])
    try Self.write(["prune", Self.bert, sparsegpt, "--method", "sparsegpt", "--sparsity", "0.5"] + Self.calibration)
    let (m, s) = (try Self.quality(Self.bert, magnitude), try Self.quality(Self.bert, sparsegpt))
    #expect(s > m, "cosine: sparsegpt \(s), magnitude \(m)")
  }

  @Test func svdLLMBeatsPlainSVDAtTheSameRank() throws {
    let folder = TemporaryFolder()
    let (plain, whitened) = (folder.file("svd"), folder.file("svd-llm"))
    try Self.write(["factorize", Self.llama, plain, "--method", "svd", "--ratio", "0.5"])
    try Self.write(["factorize", Self.llama, whitened, "--method", "svd-llm", "--ratio", "0.5"] + Self.calibration)
    let (p, w) = (try Self.quality(Self.llama, plain), try Self.quality(Self.llama, whitened))
    #expect(w < 0.8 * p, "KL: svd-llm \(w), svd \(p)")
  }

  /// The same data and settings give the same bytes at any --jobs.
  @Test func calibratedOutputsDoNotDependOnJobs() throws {
    let folder = TemporaryFolder()
    for jobs in ["1", "2"] {
      try Self.write(
        ["prune", Self.llama, folder.file("j\(jobs)"), "--method", "sparsegpt", "--sparsity", "0.5", "--jobs", jobs]
          + Self.calibration)
    }
    let a = try Data(contentsOf: URL(fileURLWithPath: folder.file("j1") + "/model.safetensors"))
    let b = try Data(contentsOf: URL(fileURLWithPath: folder.file("j2") + "/model.safetensors"))
    #expect(a == b)
  }

  struct Refusal: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var status: Int32
    var fragment: String
    var testDescription: String { arguments.joined(separator: " ") }
  }

  static let refusals: [Refusal] = [
    Refusal(
      arguments: ["prune", "--method", "sparsegpt", "--pattern", "2:4"], status: 64, fragment: "needs calibration data"),
    Refusal(
      arguments: ["prune", "--method", "magnitude", "--sparsity", "0.5", "--data", corpus], status: 64,
      fragment: "calibration data for --method sparsegpt"),
    Refusal(
      arguments: ["prune", "--method", "sparsegpt", "--sparsity", "0.5", "--scope", "row", "--data", corpus],
      status: 64, fragment: "--scope does not apply"),
    Refusal(
      arguments: ["prune", "--method", "sparsegpt", "--sparsity", "0.5", "--data", corpus, "--samples", "100000"],
      status: 65, fragment: "where --samples asks for 100000"),
    Refusal(
      arguments: ["factorize", "--method", "svd-llm", "--energy", "0.9", "--data", corpus], status: 64,
      fragment: "takes --rank or --ratio"),
    Refusal(
      arguments: ["factorize", "--method", "asvd", "--rank", "4"], status: 64, fragment: "needs calibration data"),
    Refusal(
      arguments: ["quantize", "--scheme", "W4A16", "--data", corpus], status: 64,
      fragment: "calibration data for --method gptq"),
    Refusal(
      arguments: ["quantize", "--scheme", "W4A16", "--dampening", "0.1"], status: 64, fragment: "add --method gptq"),
    Refusal(arguments: ["quantize", "--scheme", "W4A16", "--method", "gptq"], status: 64, fragment: "--data FILE"),
    Refusal(
      arguments: ["quantize", "--scheme", "W4A16", "--refit", "none"], status: 64, fragment: "add --method gptq"),
    Refusal(
      arguments: ["prune", "--method", "magnitude", "--sparsity", "0.5", "--refit", "ls"], status: 64,
      fragment: "--refit does not apply to --method magnitude"),
  ]

  @Test(arguments: refusals)
  func refusesBeforeWriting(_ refusal: Refusal) throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    var arguments = refusal.arguments
    arguments.insert(contentsOf: [Self.llama, out], at: 1)
    let result = try runProcess(swiftcompressExecutable, arguments)
    #expect(result.status == refusal.status, "\(result.stderr)")
    #expect(result.stderr.contains(refusal.fragment), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  /// A recipe cannot give calibration data: SparseGPT in a recipe is refused before anything is written.
  @Test func recipesRefuseMethodsThatNeedData() throws {
    let folder = TemporaryFolder()
    let recipe = folder.file("r.yaml")
    try "stages:\n  - prune:\n      method: sparsegpt\n      pattern: '2:4'\n".write(
      toFile: recipe, atomically: true, encoding: .utf8)
    let result = try runProcess(swiftcompressExecutable, ["run", recipe, Self.llama, folder.file("out")])
    #expect(result.status != 0)
    #expect(result.stderr.contains("sparsegpt needs calibration data"), "\(result.stderr)")
  }
}
