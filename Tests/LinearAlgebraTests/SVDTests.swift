import Testing

@testable import LinearAlgebra

@Suite("SVD")
struct SVDTests {
  /// Checks every property of a thin SVD of `a`.
  func checkSVD(_ f: SVD, of a: Matrix) throws {
    let k = min(a.rows, a.columns)
    let n = max(a.rows, a.columns)
    #expect(f.u.rows == a.rows && f.u.columns == k)
    #expect(f.vt.rows == k && f.vt.columns == a.columns)
    #expect(f.singularValues.count == k)
    // Reconstruction: ‖U S Vt − A‖_F / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
    #expect(relativeError(try f.reconstructed(), a) <= tolerance(n))
    // Orthonormality: ‖UᵀU − I‖_F / √k and ‖Vt Vtᵀ − I‖_F / √k <= 1e-5 * sqrt(max(m, n)).
    #expect(try orthonormalColumnsError(f.u) <= tolerance(n))
    #expect(try orthonormalRowsError(f.vt) <= tolerance(n))
    // Singular values: non-negative and descending (exactly; LAPACK sorts them).
    #expect(f.singularValues.allSatisfy { $0 >= 0 })
    #expect(zip(f.singularValues, f.singularValues.dropFirst()).allSatisfy { $0 >= $1 })
  }

  @Test(arguments: testShapes)
  func svdReconstructsTallWideAndSquare(shape: (rows: Int, columns: Int)) throws {
    let a = gaussianMatrix(shape.rows, shape.columns, seed: 100)
    let f = try svd(a)
    #expect(f.routine == .sgesdd)
    #expect(f.sgesddFailureInfo == nil)
    try checkSVD(f, of: a)
    // jobz = 'N' values agree with the full SVD: ‖s_N − s‖ / ‖s‖ <= 1e-5 * sqrt(max(m, n)).
    let values = try singularValues(a)
    let diff = zip(values, f.singularValues).map { Double($0 - $1) * Double($0 - $1) }
    let norm = f.singularValues.map { Double($0) * Double($0) }
    let relative = (diff.reduce(0, +) / norm.reduce(0, +)).squareRoot()
    #expect(relative <= Double(tolerance(max(shape.rows, shape.columns))))
  }

  @Test func fallbackToSgesvdIsExercisedAndAgrees() throws {
    for (m, n) in [(90, 60), (60, 90)] {
      let a = gaussianMatrix(m, n, seed: 101)
      let fallback = try svd(a, simulateSgesddFailure: true)
      #expect(fallback.routine == .sgesvd)
      #expect(fallback.sgesddFailureInfo == 1)
      try checkSVD(fallback, of: a)
      // Same spectrum as sgesdd: max |Δσ| / σ_max <= 1e-5 * sqrt(max(m, n)).
      let reference = try svd(a).singularValues
      let values = try singularValues(a, simulateSgesddFailure: true)
      for candidate in [fallback.singularValues, values] {
        let worst = zip(candidate, reference).map { abs($0 - $1) }.max() ?? 0
        #expect(worst / reference[0] <= tolerance(max(m, n)))
      }
    }
  }

  @Test func eckartYoungTruncationError() throws {
    let a = gaussianMatrix(120, 80, seed: 102)
    let f = try svd(a)
    for rank in [0, 1, 10, 40, 79, 80] {
      let truncated = try f.truncated(rank: rank)
      #expect(truncated.rank == rank)
      #expect(truncated.u.columns == rank && truncated.vt.rows == rank)
      let actual = difference(a, try truncated.reconstructed()).frobeniusNorm
      let predicted = f.truncationError(keeping: rank)
      // |‖A − A_k‖_F − sqrt(Σ_{i≥k} σᵢ²)| / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
      #expect(abs(actual - predicted) / a.frobeniusNorm <= tolerance(120))
    }
    #expect(f.truncationError(keeping: 80) == 0)
    #expect(throws: LinearAlgebraError.self) { try f.truncated(rank: 81) }
    #expect(throws: LinearAlgebraError.self) { try f.truncated(rank: -1) }
  }

  @Test func lowRankMatrixHasNegligibleTrailingValues() throws {
    // A = B C with B 100x5, C 5x70: rank 5.
    let a = try gemm(gaussianMatrix(100, 5, seed: 103), gaussianMatrix(5, 70, seed: 104))
    let s = try singularValues(a)
    // σ₆… are rounding noise: <= 1e-5 * sqrt(100) relative to σ₁.
    #expect(s[5] / s[0] <= tolerance(100))
    #expect(s[4] / s[0] > 1e-2)
  }

  @Test func rowMajorWeightViaTransposeGivesSameSpectrum() throws {
    // A safetensors weight W [out = 64, in = 96] arrives row-major; its buffer is Wᵀ.
    let w = gaussianMatrix(64, 96, seed: 105)
    let wt = try Matrix.transposeOfRowMajor(w.rowMajorStorage(), rows: 64, columns: 96)
    let s1 = try singularValues(w)
    let s2 = try singularValues(wt)
    // σ(W) = σ(Wᵀ): max |Δσ| / σ_max <= 1e-5 * sqrt(96).
    let worst = zip(s1, s2).map { abs($0 - $1) }.max() ?? 0
    #expect(worst / s1[0] <= tolerance(96))
  }

  @Test func emptyMatricesGiveEmptyFactors() throws {
    let f = try svd(Matrix(rows: 0, columns: 5))
    #expect(f.u.rows == 0 && f.u.columns == 0)
    #expect(f.vt.rows == 0 && f.vt.columns == 5)
    #expect(f.singularValues.isEmpty)
    #expect(try singularValues(Matrix(rows: 4, columns: 0)).isEmpty)
    #expect(try svd(Matrix(rows: 3, columns: 0)).reconstructed() == Matrix(rows: 3, columns: 0))
  }

  @Test func zeroMatrixHasZeroSingularValues() throws {
    let f = try svd(Matrix(rows: 5, columns: 4))
    #expect(f.singularValues == [0, 0, 0, 0])  // exact
    try checkSVD(f, of: try Matrix(rows: 5, columns: 4))
  }
}
