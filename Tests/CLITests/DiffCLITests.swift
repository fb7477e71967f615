import CheckpointIO
import Foundation
import TestSupport
import Testing

@Suite("diff command")
struct DiffCLITests {
  @Test func aCheckpointAgainstItselfExits0WithZeroError() throws {
    let result = try swiftcompress("diff", fixture("tiny-llama-f32"), fixture("tiny-llama-f32"), "--max-error", "0")
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.isEmpty)
    #expect(result.stdout.contains("21 tensors compared (21 float, 0 exact), 21 equal, 0 differ"))
    #expect(result.stdout.contains("total: relative error 0, SQNR inf dB, cosine 1.000000, max abs 0"))
  }

  /// --max-error between the smallest and largest tensor error exits 3 and names exactly
  /// the tensors above it; above the largest exits 0.
  @Test func maxErrorGatesOnEveryTensor() throws {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let quantize = try swiftcompress("quantize", fixture("tiny-llama-f32"), out, "--scheme", "W4A16", "--quiet")
    #expect(quantize.status == 0, "\(quantize.stderr)")
    let json = try swiftcompress("diff", fixture("tiny-llama-f32"), out, "--json")
    #expect(json.status == 0, "\(json.stderr)")
    let report = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
    #expect(report["schema"] as? String == "swiftcompress-diff")
    var errors: [String: Double] = [:]
    for tensor in report["tensors"] as! [[String: Any]] {
      errors[tensor["name"] as! String] = (tensor["metrics"] as! [String: Any])["relative_frobenius_error"] as? Double
    }
    let changed = errors.filter { $0.value > 0 }
    #expect(changed.count == 14)
    let sorted = changed.values.sorted()
    let limit = (sorted[6] + sorted[7]) / 2

    let gated = try swiftcompress("diff", fixture("tiny-llama-f32"), out, "--max-error", "\(limit)")
    #expect(gated.status == 3, "\(gated.stderr)")
    #expect(gated.stderr.contains("7 of 21 tensors exceed --max-error"))
    for (name, error) in changed {
      #expect(gated.stderr.contains("  \(name): relative error") == (error > limit), "\(name)")
    }
    #expect(gated.stdout.contains("total: relative error"))

    let passed = try swiftcompress("diff", fixture("tiny-llama-f32"), out, "--max-error", "\(sorted.last! * 1.01)")
    #expect(passed.status == 0, "\(passed.stderr)")
    #expect(passed.stderr.isEmpty)
    #expect(try swiftcompress("diff", fixture("tiny-llama-f32"), out, "--max-error=-1").status == 64)
  }

  @Test func missingTensorsAreListedAndExit65UnlessAllowed() throws {
    let folder = TemporaryFolder()
    let convert = try swiftcompress(
      "convert", fixture("tiny-llama-f32"), folder.file("c"), "--dtype", "bf16", "--quiet")
    #expect(convert.status == 0)
    // --exclude leaves a tensor out of the comparison (BF16 rounding is below 0.01).
    let selection = try swiftcompress(
      "diff", fixture("tiny-llama-f32"), folder.file("c"), "--exclude", "^lm_head", "--max-error", "0.01")
    #expect(selection.status == 0, "\(selection.stderr)")
    #expect(selection.stdout.contains("20 tensors compared"))

    let result = try swiftcompress("diff", fixture("tiny-llama-f32"), fixture("tiny-bert"))
    #expect(result.status == 65)
    #expect(result.stderr.contains("only in A: model.norm.weight"))
    #expect(result.stderr.contains("only in B: pooler.dense.weight"))
    #expect(result.stderr.contains("--allow-missing"))
    #expect(result.stdout.contains("only in A: lm_head.weight"))

    let allowed = try swiftcompress("diff", fixture("tiny-llama-f32"), fixture("tiny-bert"), "--allow-missing")
    #expect(allowed.status == 0, "\(allowed.stderr)")
    #expect(allowed.stdout.contains("0 tensors compared"))
    #expect(try swiftcompress("diff", fixture("tiny-llama-f32"), folder.file("missing")).status == 66)
  }
}
