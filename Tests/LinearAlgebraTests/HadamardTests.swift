import Foundation
import TestSupport
import Testing

@testable import LinearAlgebra

/// Hadamard matrices and seeded rotations. Tolerances: entries of `H_n` are exact up to the
/// rounding of `1/sqrt(n)` (1 ulp); products of orthogonal float32 matrices of order n sum n
/// terms, so `Q Qᵀ` is the identity within a few ulps times sqrt(n): 1e-5 for n <= 1024.
@Suite struct HadamardTests {
  /// `scipy.linalg.hadamard(n)` for n = 2..256 (Scripts/reference/make_hadamard_goldens.py, scipy
  /// 1.17.1), read from the golden safetensors file with a minimal parser (F16, ±1 exactly).
  static func goldens() throws -> [Int: [Float]] {
    let data = try #require(FileManager.default.contents(atPath: fixture("golden/rotation/hadamard.safetensors")))
    let bytes = [UInt8](data)
    let length = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
    let header = try #require(
      try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
    var matrices: [Int: [Float]] = [:]
    for (name, entry) in header where name.hasPrefix("hadamard.") {
      let info = try #require(entry as? [String: Any])
      #expect(info["dtype"] as? String == "F16")
      let offsets = try #require(info["data_offsets"] as? [Int])
      let start = 8 + length + offsets[0]
      matrices[Int(name.dropFirst("hadamard.".count))!] = stride(from: start, to: 8 + length + offsets[1], by: 2).map {
        Float(Float16(bitPattern: UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8))
      }
    }
    return matrices
  }

  @Test func sylvesterMatchesScipy() throws {
    let goldens = try Self.goldens()
    #expect(goldens.keys.sorted() == [2, 4, 8, 16, 32, 64, 128, 256])
    for (n, golden) in goldens {
      let h = try Hadamard.matrix(n)
      let scale = 1 / Float(n).squareRoot()
      var worst: Float = 0
      for i in 0..<n { for j in 0..<n { worst = max(worst, abs(h[i, j] - golden[i * n + j] * scale)) } }
      #expect(worst == 0, "H_\(n) differs from scipy by \(worst)")
      // The fast transform of each row of the identity is H's row (H is symmetric).
      var identity = [Float](repeating: 0, count: n * n)
      for i in 0..<n { identity[i * n + i] = 1 }
      Hadamard.transformRows(&identity, length: n)
      let fast = zip(identity, golden).map { abs($0 - $1 * scale) }.max() ?? 0
      #expect(fast <= 1e-6, "fast transform of order \(n): \(fast)")
    }
  }

  @Test func fastTransformIsTheMatrixProduct() throws {
    let n = 256
    var rng = SplitMix64(seed: 11)
    var x = (0..<(3 * n)).map { _ in rng.gaussian() }
    let h = try Hadamard.matrix(n)
    let expected = (0..<3).flatMap { r in
      (0..<n).map { j in (0..<n).reduce(Float(0)) { $0 + x[r * n + $1] * h[$1, j] } }
    }
    Hadamard.transformRows(&x, length: n)
    let worst = zip(x, expected).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= 1e-5, "\(worst)")
  }

  @Test func notAPowerOfTwoIsRefused() {
    #expect(throws: LinearAlgebraError.self) { try Hadamard.matrix(12) }
    #expect(!Hadamard.isPowerOfTwo(0) && Hadamard.isPowerOfTwo(1) && !Hadamard.isPowerOfTwo(96))
  }

  /// Q Qᵀ = I for powers of two and for n = 2^k m (12, 96, 896 = 128 x 7, 5 and 1).
  @Test(arguments: [1, 2, 5, 12, 64, 96, 128, 896])
  func randomizedHadamardIsOrthogonal(_ n: Int) throws {
    let q = try RandomizedHadamard(size: n, seed: 42).matrix()
    let product = try gemm(q, q, transposeB: true)
    var worst: Float = 0
    for i in 0..<n { for j in 0..<n { worst = max(worst, abs(product[i, j] - (i == j ? 1 : 0))) } }
    print("randomized Hadamard \(n): max |Q Q^T - I| = \(worst)")
    #expect(worst <= 1e-5, "order \(n): \(worst)")
  }

  /// The documented structure: Q = (H_{2^k} ⊗ R_m) diag(s), the same for the same seed.
  @Test func randomizedHadamardIsTheDocumentedKroneckerProduct() throws {
    let rotation = try RandomizedHadamard(size: 12, seed: 5)
    #expect(rotation.powerOfTwo == 4 && rotation.oddFactor == 3)
    let q = rotation.matrix()
    let h = try Hadamard.matrix(4)
    var worst: Float = 0
    for a in 0..<4 {
      for b in 0..<3 {
        for c in 0..<4 {
          for d in 0..<3 {
            let expected = h[a, c] * rotation.oddRotation[b * 3 + d] * rotation.signs[c * 3 + d]
            worst = max(worst, abs(q[a * 3 + b, c * 3 + d] - expected))
          }
        }
      }
    }
    #expect(worst <= 1e-6, "\(worst)")
    #expect(try RandomizedHadamard(size: 12, seed: 5) == rotation)
    #expect(try RandomizedHadamard(size: 12, seed: 6) != rotation)
    // A power of two: H diag(s), entries ±1/sqrt(n).
    let power = try RandomizedHadamard(size: 64, seed: 1).matrix()
    #expect(power.rowMajorStorage().allSatisfy { abs(abs($0) - 0.125) <= 1e-7 })
  }
}
