import Testing

@testable import LinearAlgebra

@Suite("gemm and BLAS threads")
struct BLASTests {
  @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
  func gemmMatchesNaiveTripleLoop(transposeA: Bool, transposeB: Bool) throws {
    let (m, k, n) = (37, 81, 53)
    let a = gaussianMatrix(transposeA ? k : m, transposeA ? m : k, seed: 10)
    let b = gaussianMatrix(transposeB ? n : k, transposeB ? k : n, seed: 11)
    let opA = transposeA ? a.transposed() : a
    let opB = transposeB ? b.transposed() : b
    let expected = naiveProduct(opA, opB)
    let c = try gemm(a, b, transposeA: transposeA, transposeB: transposeB)
    #expect(c.rows == m && c.columns == n)
    // Float32 dot products of length k = 81 against a Double reference: relative
    // Frobenius error <= 1e-5 * sqrt(k).
    #expect(relativeError(c, expected) <= tolerance(k))
  }

  @Test func gemmAccumulatesWithAlphaAndBeta() throws {
    let a = gaussianMatrix(20, 30, seed: 12)
    let b = gaussianMatrix(30, 10, seed: 13)
    let c0 = gaussianMatrix(20, 10, seed: 14)
    var c = c0
    try gemm(a, b, alpha: 0.5, beta: -2, into: &c)
    let ab = naiveProduct(a, b)
    var expected = c0
    for j in 0..<10 { for i in 0..<20 { expected[i, j] = 0.5 * ab[i, j] - 2 * c0[i, j] } }
    // Relative Frobenius error <= 1e-5 * sqrt(k), k = 30.
    #expect(relativeError(c, expected) <= tolerance(30))
  }

  @Test func gemmWithBetaZeroIgnoresGarbageInC() throws {
    let a = gaussianMatrix(4, 5, seed: 15)
    let b = gaussianMatrix(5, 3, seed: 16)
    var c = try Matrix(rows: 4, columns: 3, repeating: .nan)
    try gemm(a, b, into: &c)
    #expect(c.isFinite)
    #expect(relativeError(c, naiveProduct(a, b)) <= tolerance(5))  // 1e-5 * sqrt(5)
  }

  @Test func gemmEmptyInnerDimensionScalesC() throws {
    let a = try Matrix(rows: 3, columns: 0)
    let b = try Matrix(rows: 0, columns: 2)
    var c = try Matrix(rows: 3, columns: 2, repeating: 4)
    try gemm(a, b, beta: 0.5, into: &c)
    #expect(c == (try Matrix(rows: 3, columns: 2, repeating: 2)))  // exact
    #expect(try gemm(a, b) == Matrix(rows: 3, columns: 2))
  }

  @Test func gemmDimensionMismatchThrows() throws {
    let a = gaussianMatrix(2, 3, seed: 17)
    #expect(throws: LinearAlgebraError.self) { try gemm(a, a) }
    var wrongC = try Matrix(rows: 3, columns: 3)
    #expect(throws: LinearAlgebraError.self) { try gemm(a, a, transposeB: true, into: &wrongC) }
    do {
      _ = try gemm(a, a)
      Issue.record("expected a throw")
    } catch {
      guard case .dimensionMismatch(let operation, let details) = error else {
        Issue.record("unexpected \(error)")
        return
      }
      #expect(operation == "gemm")
      #expect(details.contains("2x3"))
    }
  }

  @Test func threadCountCanBeSetAndRead() {
    let original = blasThreadCount()
    #expect(original >= 1)
    setBLASThreads(1)
    #expect(blasThreadCount() == 1)
    setBLASThreads(0)  // clamped to 1
    #expect(blasThreadCount() == 1)
    setBLASThreads(original)
    #expect(blasThreadCount() == original)
    #expect(blasConfiguration().contains("OpenBLAS"))
  }
}
