import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// Relative Frobenius error, computed here in Double from two float arrays.
func independentError(_ reference: [Float], _ other: [Float]) -> (error: Double, energy: Double) {
  var error = 0.0
  var energy = 0.0
  for i in reference.indices {
    let d = Double(reference[i]) - Double(other[i])
    error += d * d
    energy += Double(reference[i]) * Double(reference[i])
  }
  return (error, energy)
}

/// A selection of exactly these tensor names.
func exactly(_ names: [String]) throws -> TensorSelection {
  try TensorSelection(include: names.map { "^" + NSRegularExpression.escapedPattern(for: $0) + "$" })
}

@Suite("Checkpoint diff")
struct DiffTests {
  @Test func aCheckpointAgainstItselfHasZeroError() throws {
    let report = try CheckpointDiff.compare(fixture("tiny-bert"), fixture("tiny-bert"))
    #expect(report.isComplete)
    #expect(report.totals.compared == 40 && report.totals.equal == 40 && report.totals.differing == 0)
    #expect(report.totals.exactTensors == 1)  // embeddings.position_ids (I64)
    #expect(report.totals.metrics?.relativeFrobeniusError == 0 && report.totals.metrics?.maxAbsError == 0)
    #expect(report.totals.metrics?.errorEnergy == 0)
    #expect(report.tensors.allSatisfy { $0.equal && !$0.exceeds(maxError: 0) })
    #expect(report.tensors(exceeding: 0).isEmpty)
    #expect(report.a.format == "dense" && report.b.tensorCount == 40)
  }

  /// F32 against its BF16 rounding: every tensor's error and the total equal a Double
  /// computation from the stored floats.
  @Test func bf16ErrorMatchesAnIndependentComputation() throws {
    let report = try CheckpointDiff.compare(fixture("tiny-llama-f32"), fixture("tiny-llama-bf16"))
    let a = try Checkpoint.open(fixture("tiny-llama-f32"))
    let b = try Checkpoint.open(fixture("tiny-llama-bf16"))
    #expect(report.isComplete && report.tensors.count == a.tensors.count)
    var error = 0.0
    var energy = 0.0
    for entry in report.tensors {
      let x = values(a, entry.name)
      let y = values(b, entry.name)
      let (e, s) = independentError(x, y)
      error += e
      energy += s
      let m = try #require(entry.metrics)
      #expect(abs(m.relativeFrobeniusError - (e / s).squareRoot()) <= 1e-9 * m.relativeFrobeniusError, "\(entry.name)")
      let maxAbs = zip(x, y).map { abs($0 - $1) }.max() ?? 0
      #expect(m.maxAbsError == Double(maxAbs), "\(entry.name)")
      #expect(entry.aStorage == "F32" && entry.bStorage == "BF16" && !entry.equal)
    }
    let total = try #require(report.totals.metrics)
    let expected = (error / energy).squareRoot()
    #expect(expected > 1e-3 && abs(total.relativeFrobeniusError - expected) <= 1e-9 * expected)
    let sqnr = try #require(total.sqnrDB)
    #expect(abs(sqnr - 10 * log10(energy / error)) < 1e-6)
  }

  /// B dequantized on the fly gives, over the tensors quantize changed, the total error
  /// quantize's own report states within 1e-6 relative, and zero error on the kept ones.
  /// NVFP4's reference decoder rounds its values W' to BF16, which moves the error by at
  /// most ||W' - bf16(W')|| / ||W|| <= 2^-8 (1 + error) (triangle inequality).
  @Test(arguments: QuantizationScheme.allCases)
  func quantizedErrorIsTheOneQuantizeReported(_ scheme: QuantizationScheme) throws {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let quantized = try Compressor.run(
      pass: try QuantizePass(configuration: .init(scheme: scheme)),
      options: CompressionOptions(
        input: fixture("tiny-llama-f32"), output: out, selection: try TensorSelection(), command: "quantize"))
    let changed = quantized.tensors.filter { !$0.isKept }
    #expect(changed.count == 14)
    let report = try CheckpointDiff.compare(fixture("tiny-llama-f32"), out, selection: try exactly(changed.map(\.name)))
    #expect(report.isComplete && report.tensors.count == changed.count)
    func tolerance(_ error: Double) -> Double { scheme == .nvfp4 ? 0x1p-8 * (1 + error) : 1e-6 * error }
    let stated = try #require(quantized.totals.metrics?.relativeFrobeniusError)
    let measured = try #require(report.totals.metrics?.relativeFrobeniusError)
    #expect(abs(measured - stated) <= tolerance(stated), "diff \(measured), quantize \(stated)")
    for entry in changed {
      let diff = try #require(report.tensors.first { $0.name == entry.name })
      let a = try #require(diff.metrics?.relativeFrobeniusError)
      let b = try #require(entry.metrics?.relativeFrobeniusError)
      #expect(abs(a - b) <= tolerance(b), "\(entry.name)")
      #expect(diff.aStorage == "F32" && diff.bStorage.hasSuffix("dequantized"))
    }
    let whole = try CheckpointDiff.compare(fixture("tiny-llama-f32"), out)
    #expect(whole.isComplete && whole.tensors.count == 21 && whole.totals.equal == 7)
    #expect(whole.b.format != "dense")
  }

  /// factorize's weight_a x weight_b, multiplied out here in Double, has the error diff reports.
  @Test func factorizedOutputIsComparedAsTheProductOfItsFactors() throws {
    let folder = TemporaryFolder()
    let (factorized, output) = try factorize(
      "tiny-llama-f32", .init(method: .svd, rank: .rank(16)), into: folder, name: "f")
    let report = try CheckpointDiff.compare(fixture("tiny-llama-f32"), folder.file("f"))
    #expect(report.isComplete && report.tensors.count == 21 && report.b.format == "low-rank (factorize)")
    let original = try Checkpoint.open(fixture("tiny-llama-f32"))
    var checked = 0
    for entry in factorized.tensors where !entry.isKept {
      let module = String(entry.name.dropLast(".weight".count))
      let a = values(output, module + ".weight_a")
      let b = values(output, module + ".weight_b")
      let (rows, columns) = (entry.shape[0], entry.shape[1])
      let rank = a.count / rows
      var product = [Float](repeating: 0, count: rows * columns)
      for r in 0..<rows {
        for c in 0..<columns {
          var sum = 0.0
          for k in 0..<rank { sum += Double(a[r * rank + k]) * Double(b[k * columns + c]) }
          product[r * columns + c] = Float(sum)
        }
      }
      let (e, s) = independentError(values(original, entry.name), product)
      let diff = try #require(report.tensors.first { $0.name == entry.name })
      let measured = try #require(diff.metrics?.relativeFrobeniusError)
      #expect(abs(measured - (e / s).squareRoot()) <= 1e-4 * measured, "\(entry.name)")
      #expect(diff.bStorage == "F32 weight_a x weight_b")
      checked += 1
    }
    #expect(checked == 14)
  }

  /// A bitmask-pruned checkpoint equals its dense twin exactly, and against the original
  /// shows the error prune reported.
  @Test func bitmaskPrunedOutputIsComparedDense() throws {
    let folder = TemporaryFolder()
    let configuration = PrunePass.Configuration(method: .nm, pattern: NMPattern(n: 2, m: 4), sparseFormat: .bitmask)
    var denseConfiguration = configuration
    denseConfiguration.sparseFormat = .dense
    let (pruned, _) = try prune("tiny-llama-bf16", configuration, into: folder, name: "s")
    _ = try prune("tiny-llama-bf16", denseConfiguration, into: folder, name: "d")

    let twins = try CheckpointDiff.compare(folder.file("d"), folder.file("s"))
    #expect(twins.a.format == "dense" && twins.b.format == "sparse-bitmask")
    #expect(twins.isComplete && twins.tensors.count == 21 && twins.totals.differing == 0)
    #expect(twins.totals.metrics?.relativeFrobeniusError == 0 && twins.totals.metrics?.errorEnergy == 0)

    let report = try CheckpointDiff.compare(fixture("tiny-llama-bf16"), folder.file("s"))
    for entry in pruned.tensors where !entry.isKept {
      let diff = try #require(report.tensors.first { $0.name == entry.name })
      let a = try #require(diff.metrics?.relativeFrobeniusError)
      let b = try #require(entry.metrics?.relativeFrobeniusError)
      #expect(a > 0.1 && abs(a - b) <= 1e-6 * b, "\(entry.name)")
    }
  }

  /// Tensors on one side only, shape mismatches, integer tensors and NaN are reported, not trapped on.
  @Test func missingMismatchedIntegerAndNonFiniteTensorsAreReported() throws {
    let folder = TemporaryFolder()
    func f32(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
    func i64(_ values: [Int64]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
    try writeTensors(
      [
        ("same", .f32, [2, 2], f32([1, 2, 3, 4])),
        ("noisy", .f32, [4], f32([1, 2, 3, 4])),
        ("nan", .f32, [2], f32([1, 2])),
        ("only_a", .f32, [1], f32([1])),
        ("shape", .f32, [2, 3], f32([1, 2, 3, 4, 5, 6])),
        ("ids", .i64, [3], i64([0, 1, 2])),
        ("mask", .bool, [2], [1, 0]),
      ], to: folder.file("a.safetensors"))
    try writeTensors(
      [
        ("same", .f32, [2, 2], f32([1, 2, 3, 4])),
        ("noisy", .f32, [4], f32([1, 2, 3, 5])),
        ("nan", .f32, [2], f32([1, .nan])),
        ("only_b", .f16, [1], [0, 0x3C]),
        ("shape", .f32, [3, 2], f32([1, 2, 3, 4, 5, 6])),
        ("ids", .i64, [3], i64([0, 1, 3])),
        ("mask", .bool, [2], [1, 0]),
      ], to: folder.file("b.safetensors"))
    let report = try CheckpointDiff.compare(folder.file("a.safetensors"), folder.file("b.safetensors"))
    #expect(!report.isComplete)
    #expect(report.onlyInA == ["only_a"] && report.onlyInB == ["only_b"])
    #expect(
      report.shapeMismatches == [
        .init(name: "shape", aShape: [2, 3], bShape: [3, 2], aStorage: "F32", bStorage: "F32")
      ])
    #expect(report.tensors.map(\.name) == ["same", "noisy", "nan", "ids", "mask"])
    let noisy = try #require(report.tensors.first { $0.name == "noisy" }?.metrics)
    #expect(abs(noisy.relativeFrobeniusError - 1 / 30.0.squareRoot()) < 1e-12 && noisy.maxAbsError == 1)
    #expect(report.tensors.first { $0.name == "nan" }?.metrics?.nonFiniteCount == 1)
    #expect(report.tensors.first { $0.name == "ids" }.map { $0.comparison == "exact" && !$0.equal } == true)
    #expect(report.tensors.first { $0.name == "mask" }.map { $0.comparison == "exact" && $0.equal } == true)
    #expect(report.tensors(exceeding: 0.5).map(\.name) == ["nan", "ids"])
    #expect(report.tensors(exceeding: 0.1).map(\.name) == ["noisy", "nan", "ids"])
    #expect(report.totals.compared == 5 && report.totals.equal == 2 && report.totals.exactTensors == 2)
    #expect(report.totals.onlyInA == 1 && report.totals.onlyInB == 1 && report.totals.shapeMismatches == 1)

    let selected = try CheckpointDiff.compare(
      folder.file("a.safetensors"), folder.file("b.safetensors"),
      selection: try TensorSelection(include: ["^(same|noisy|only_a)$"], exclude: ["noisy"]))
    #expect(selected.tensors.map(\.name) == ["same"] && selected.onlyInA == ["only_a"] && selected.onlyInB.isEmpty)
  }

  /// The JSON report has the documented snake_case keys and round-trips.
  @Test func jsonReportFollowsTheDocumentedSchema() throws {
    let report = try CheckpointDiff.compare(fixture("tiny-llama-f32"), fixture("tiny-llama-bf16"))
    let text = report.jsonText()
    let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    #expect(
      Set(json.keys) == [
        "schema", "schema_version", "tool", "a", "b", "selection", "tensors", "only_in_a", "only_in_b",
        "shape_mismatches", "totals", "warnings",
      ])
    #expect(json["schema"] as? String == "swiftcompress-diff")
    let totals = json["totals"] as! [String: Any]
    #expect(
      Set(totals.keys) == [
        "compared", "float_tensors", "exact_tensors", "equal", "differing", "only_in_a", "only_in_b",
        "shape_mismatches", "parameters", "metrics",
      ])
    let tensor = (json["tensors"] as! [[String: Any]])[0]
    #expect(
      Set(tensor.keys) == ["name", "shape", "parameters", "a_storage", "b_storage", "comparison", "metrics", "equal"])
    #expect(try JSONDecoder().decode(DiffReport.self, from: Data(text.utf8)) == report)
  }
}
