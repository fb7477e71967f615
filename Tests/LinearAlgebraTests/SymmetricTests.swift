import Testing

@testable import LinearAlgebra

@Suite("Symmetric eigen and Cholesky")
struct SymmetricTests {
  @Test(arguments: [1, 2, 17, 150])
  func eigenDecomposition(n: Int) throws {
    let a = symmetricMatrix(n, seed: 300 + UInt64(n))
    let f = try symmetricEigen(a)
    #expect(f.eigenvalues.count == n)
    #expect(f.eigenvectors.rows == n && f.eigenvectors.columns == n)
    // Ascending order (exact; LAPACK sorts).
    #expect(zip(f.eigenvalues, f.eigenvalues.dropFirst()).allSatisfy { $0 <= $1 })
    // ‖AV − V diag(w)‖_F / ‖A‖_F <= 1e-5 * sqrt(n).
    let av = try gemm(a, f.eigenvectors)
    let vw = scaleColumns(f.eigenvectors, f.eigenvalues)
    #expect(difference(av, vw).frobeniusNorm / a.frobeniusNorm <= tolerance(n))
    // ‖VᵀV − I‖_F / √n <= 1e-5 * sqrt(n).
    #expect(try orthonormalColumnsError(f.eigenvectors) <= tolerance(n))
  }

  @Test func eigenvaluesOfDiagonalMatrix() throws {
    let f = try symmetricEigen(Matrix(diagonal: [3, -1, 2]))
    #expect(f.eigenvalues == [-1, 2, 3])  // exact for a diagonal input
  }

  @Test(arguments: [1, 3, 64, 200])
  func choleskyOfPositiveDefiniteMatrix(n: Int) throws {
    // A = B Bᵀ + n I is symmetric positive definite and well conditioned.
    let b = gaussianMatrix(n, n, seed: 310 + UInt64(n))
    var a = try gemm(b, b, transposeB: true)
    for i in 0..<n { a[i, i] += Float(n) }
    let l = try cholesky(a)
    #expect(maxAboveDiagonal(l) == 0)  // exactly lower triangular
    #expect((0..<n).allSatisfy { l[$0, $0] > 0 })
    // ‖LLᵀ − A‖_F / ‖A‖_F <= 1e-5 * sqrt(n).
    #expect(relativeError(try gemm(l, l, transposeB: true), a) <= tolerance(n))
  }

  @Test func choleskyOfIndefiniteMatrixNamesTheLeadingMinor() throws {
    #expect(throws: LinearAlgebraError.notPositiveDefinite(routine: "spotrf", leadingMinor: 3)) {
      try cholesky(Matrix(diagonal: [1, 2, -1, 4]))
    }
    // [[1, 2], [2, 1]] has eigenvalues 3 and −1: the 2x2 minor fails.
    let indefinite = try Matrix(rows: 2, columns: 2, rowMajor: [1, 2, 2, 1] as [Float])
    #expect(throws: LinearAlgebraError.notPositiveDefinite(routine: "spotrf", leadingMinor: 2)) {
      try cholesky(indefinite)
    }
  }

  @Test func squareShapeIsRequired() throws {
    let a = gaussianMatrix(3, 4, seed: 320)
    #expect(throws: LinearAlgebraError.self) { try cholesky(a) }
    #expect(throws: LinearAlgebraError.self) { try symmetricEigen(a) }
  }
}
