import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

/// The online block-wise Hadamard rotation (`quantize --rotate block-hadamard:B`) against
/// llm-compressor 0.14.0.1's QuIPModifier(rotations ["v"], transform_type "hadamard",
/// transform_block_size B) + W4A16 group 32 round to nearest on Fixtures/models/llama
/// (`Scripts/reference/make_online_rotation_goldens.py`, Fixtures/golden/online-rotation/).
@Suite struct OnlineRotationTests {
  static let golden = fixture("golden/online-rotation")

  static func floats(_ checkpoint: Checkpoint, _ name: String) throws -> [Float] {
    let tensor = try #require(checkpoint.tensor(named: name), "\(name)")
    return Float32Conversion.floats(
      checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
  }

  static func quantized(block: Int, into folder: TemporaryFolder) throws -> String {
    let out = folder.file("w4-\(block)")
    var configuration = QuantizePass.Configuration(scheme: .w4a16, groupSize: 32)
    configuration.rotationBlock = block
    _ = try Compressor.run(
      pass: try QuantizePass(configuration: configuration),
      options: CompressionOptions(
        input: fixture("models/llama"), output: out, selection: try TensorSelection(), command: "quantize"))
    return out
  }

  /// The matrix equals compressed-tensors' `deterministic_hadamard_matrix(n)` (Sylvester, scipy's
  /// order) exactly, as saved (F64, ±1) and as applied (normalised by 1/sqrt(n), to 1 ulp).
  @Test(arguments: [16, 32, 64, 128])
  func matrixIsTheReferenceHadamard(_ n: Int) throws {
    let reference = try Self.floats(try Checkpoint.open(Self.golden + "/layer0-block16.safetensors"), "hadamard.\(n)")
    let rotation = try OnlineRotation(block: n)
    let saved = rotation.matrixBytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
    #expect(saved.map(Float.init) == reference)
    var identity = [Float](repeating: 0, count: n * n)
    for i in 0..<n { identity[i * n + i] = 1 }
    rotation.apply(&identity, rowLength: n)  // rows of I R = R
    let scale = 1 / Float(n).squareRoot()
    let worst = zip(identity, reference).map { abs($0 - $1 * scale) }.max() ?? 1
    #expect(worst <= scale * 1.2e-7, "\(worst)")
  }

  /// Byte for byte the reference: every quantized tensor of layer 0, the saved matrix, and
  /// transform_config's JSON. (The fused weights W R are computed in Float64 and rounded once,
  /// as the reference fuses them, so the scales and codes agree exactly.)
  @Test(arguments: [16, 32])
  func quantizedOutputIsTheReferences(_ block: Int) throws {
    let folder = TemporaryFolder()
    let out = try Self.quantized(block: block, into: folder)
    let reference = try Checkpoint.open(Self.golden + "/layer0-block\(block).safetensors")
    let ours = try Checkpoint.open(out)
    var compared = 0
    for tensor in reference.tensors where tensor.name.hasPrefix("model.layers.0.") && !tensor.name.hasSuffix(".fused") {
      let mine = try #require(ours.tensor(named: tensor.name), "\(tensor.name) missing")
      #expect(mine.info.dtype == tensor.info.dtype && mine.info.shape == tensor.info.shape, "\(tensor.name)")
      #expect(Array(ours.bytes(of: mine)) == Array(reference.bytes(of: tensor)), "\(tensor.name)")
      compared += 1
    }
    #expect(compared == 7 * 3 + 1)
    #expect(
      ours.tensors.filter { $0.name.hasSuffix("v_input.weight") }.map(\.name) == [
        "model.layers.0.self_attn.q_proj.v_input.weight"
      ])
    let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))))
    let expected = try JSONParser.parse(
      Array(try Data(contentsOf: URL(fileURLWithPath: Self.golden + "/config-block\(block).json"))))
    #expect(
      config["quantization_config"]?["transform_config"] == expected["quantization_config"]?["transform_config"])
  }

  /// The reference's fused weights (W R in float64, rounded to F32) equal ours exactly.
  @Test func fusedWeightsAreTheReferences() throws {
    let reference = try Checkpoint.open(Self.golden + "/layer0-block16.safetensors")
    let model = try Checkpoint.open(fixture("models/llama"))
    let rotation = try OnlineRotation(block: 16)
    for tensor in reference.tensors where tensor.name.hasSuffix(".fused") {
      let module = String(tensor.name.dropLast(".fused".count))
      let weight = try #require(model.tensor(named: module + ".weight"))
      var values = try Self.floats(model, module + ".weight")
      rotation.fuse(&values, rowLength: weight.info.shape[1])
      #expect(values == (try Self.floats(reference, tensor.name)), "\(module)")
    }
  }

  /// (x R)(W R)ᵀ = x Wᵀ on every linear module of the fixture, within float tolerance: the
  /// rotated model vLLM runs computes the original's function before quantization. Tolerance
  /// 1e-5 of the largest output (measured ~1e-7: a few roundings per value); a wrong block or
  /// side gives O(1).
  @Test(arguments: [16, 32, 64])
  func rotatedLinearComputesTheOriginal(_ block: Int) throws {
    let model = try Checkpoint.open(fixture("models/llama"))
    let rotation = try OnlineRotation(block: block)
    var random = SplitMix64(seed: 3)
    for tensor in model.tensors where tensor.name.hasSuffix("proj.weight") {
      let (rows, columns) = (tensor.info.shape[0], tensor.info.shape[1])
      let weight = try Self.floats(model, tensor.name)
      var fused = weight
      rotation.fuse(&fused, rowLength: columns)
      let x = (0..<(4 * columns)).map { _ in random.gaussian() }
      var rotatedX = x
      rotation.apply(&rotatedX, rowLength: columns)
      var worst: Float = 0
      var largest: Float = 0
      for t in 0..<4 {
        for r in 0..<rows {
          var y: Float = 0
          var z: Float = 0
          for c in 0..<columns {
            y += x[t * columns + c] * weight[r * columns + c]
            z += rotatedX[t * columns + c] * fused[r * columns + c]
          }
          worst = max(worst, abs(y - z))
          largest = max(largest, abs(y))
        }
      }
      #expect(worst <= 1e-5 * largest, "\(tensor.name): \(worst) of \(largest)")
      #expect(fused != weight)
    }
  }

  /// decompress gives (dequantized W R) R: checked against the golden's codes and scales
  /// decoded here and multiplied by the reference's matrix (a dense product, not our fast
  /// transform), within 1e-6 of the largest weight.
  @Test func decompressUndoesTheRotation() throws {
    let folder = TemporaryFolder()
    let out = try Self.quantized(block: 16, into: folder)
    let dense = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(input: out, output: dense, selection: try TensorSelection(), command: "decompress"))
    let decompressed = try Checkpoint.open(dense)
    #expect(decompressed.tensor(named: "model.layers.0.self_attn.q_proj.v_input.weight") == nil)
    let reference = try Checkpoint.open(Self.golden + "/layer0-block16.safetensors")
    let h = try Self.floats(reference, "hadamard.16").map { $0 / 4 }
    let module = "model.layers.0.mlp.down_proj"
    let packed = try #require(reference.tensor(named: module + ".weight_packed"))
    let words = reference.bytes(of: packed).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
    let scales = try Self.floats(reference, module + ".weight_scale")
    let (rows, columns) = (64, 128)
    var expected = [Float](repeating: 0, count: rows * columns)
    for r in 0..<rows {
      var q = [Float](repeating: 0, count: columns)
      for c in 0..<columns {
        let code = Int((words[r * columns / 8 + c / 8] >> (4 * UInt32(c % 8))) & 15) - 8
        q[c] = Float(code) * scales[r * (columns / 32) + c / 32]
      }
      for c in 0..<columns {
        let base = (c / 16) * 16
        var sum: Float = 0
        for k in 0..<16 { sum += q[base + k] * h[k * 16 + c - base] }
        expected[r * columns + c] = sum
      }
    }
    let got = try Self.floats(decompressed, module + ".weight")
    let largest = expected.map(abs).max() ?? 1
    let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? 1
    #expect(worst <= 1e-6 * largest, "\(worst)")
  }
}
