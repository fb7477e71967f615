import Testing

@testable import LinearAlgebra

@Suite("QR, LQ and pivoted QR")
struct QRTests {
  @Test(arguments: testShapes)
  func qrFactorizes(shape: (rows: Int, columns: Int)) throws {
    let a = gaussianMatrix(shape.rows, shape.columns, seed: 200)
    let k = min(shape.rows, shape.columns)
    let n = max(shape.rows, shape.columns)
    let f = try qr(a)
    #expect(f.q.rows == shape.rows && f.q.columns == k)
    #expect(f.r.rows == k && f.r.columns == shape.columns)
    // ‖QR − A‖_F / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
    #expect(relativeError(try gemm(f.q, f.r), a) <= tolerance(n))
    // ‖QᵀQ − I‖_F / √k <= 1e-5 * sqrt(max(m, n)).
    #expect(try orthonormalColumnsError(f.q) <= tolerance(n))
    // R is upper triangular: exactly zero below the diagonal (we copy only the triangle).
    #expect(maxBelowDiagonal(f.r) == 0)
  }

  @Test(arguments: testShapes)
  func lqBothVariantsFactorizeAndAgree(shape: (rows: Int, columns: Int)) throws {
    let a = gaussianMatrix(shape.rows, shape.columns, seed: 201)
    let k = min(shape.rows, shape.columns)
    let n = max(shape.rows, shape.columns)
    let reference = try lq(a)
    let fast = try lqViaTransposedQR(a)
    for f in [reference, fast] {
      #expect(f.l.rows == shape.rows && f.l.columns == k)
      #expect(f.q.rows == k && f.q.columns == shape.columns)
      // ‖LQ − A‖_F / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
      #expect(relativeError(try gemm(f.l, f.q), a) <= tolerance(n))
      // ‖QQᵀ − I‖_F / √k <= 1e-5 * sqrt(max(m, n)).
      #expect(try orthonormalRowsError(f.q) <= tolerance(n))
      // L is lower triangular: exactly zero above the diagonal.
      #expect(maxAboveDiagonal(f.l) == 0)
    }
    // The factorization is unique once diag(L) is made non-negative, so the two
    // variants agree after flipping signs: relative Frobenius difference of L and of Q
    // <= 1e-4 * sqrt(max(m, n)) (10x the reconstruction tolerance: this compares
    // factors, whose error is amplified by the conditioning of A).
    func normalized(_ f: LQFactorization) -> LQFactorization {
      let signs = (0..<k).map { f.l[$0, $0] < 0 ? Float(-1) : 1 }
      return LQFactorization(l: scaleColumns(f.l, signs), q: scaleRows(f.q, signs))
    }
    let r = normalized(reference)
    let g = normalized(fast)
    #expect(relativeError(g.l, r.l) <= 10 * tolerance(n))
    #expect(relativeError(g.q, r.q) <= 10 * tolerance(n))
  }

  @Test(arguments: testShapes)
  func pivotedQRFactorizesWithDecreasingDiagonal(shape: (rows: Int, columns: Int)) throws {
    let a = gaussianMatrix(shape.rows, shape.columns, seed: 202)
    let n = max(shape.rows, shape.columns)
    let f = try pivotedQR(a)
    #expect(f.permutation.sorted() == Array(0..<shape.columns))
    let ap = try Matrix(
      rows: a.rows, columns: a.columns,
      columnMajor: f.permutation.flatMap { a.column($0) })
    // ‖QR − AP‖_F / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
    #expect(relativeError(try gemm(f.q, f.r), ap) <= tolerance(n))
    #expect(try orthonormalColumnsError(f.q) <= tolerance(n))
    #expect(maxBelowDiagonal(f.r) == 0)
    // |R_ii| non-increasing, allowing a relative slack of 1e-5 * sqrt(max(m, n)) for
    // the downdated column norms sgeqp3 uses.
    let diagonal = (0..<min(f.r.rows, f.r.columns)).map { abs(f.r[$0, $0]) }
    for (x, y) in zip(diagonal, diagonal.dropFirst()) {
      #expect(y <= x * (1 + tolerance(n)))
    }
  }

  /// Keeping r columns gives the leading part of the full factorization (R exactly; Q up
  /// to rounding, sorgqr blocks differently for fewer columns: 1e-5).
  @Test func pivotedQRKeepingARankFormsTheLeadingColumns() throws {
    let a = gaussianMatrix(40, 24, seed: 203)
    let full = try pivotedQR(a)
    let part = try pivotedQR(a, keeping: 7)
    #expect(part.permutation == full.permutation)
    #expect(part.q.rows == 40 && part.q.columns == 7 && part.r.rows == 7 && part.r.columns == 24)
    let qDifference = zip(part.q.storage, full.q.storage.prefix(40 * 7)).map { abs($0 - $1) }.max() ?? 1
    #expect(qDifference <= 1e-5)
    for j in 0..<24 { for i in 0..<7 { #expect(part.r[i, j] == full.r[i, j]) } }
    #expect(throws: LinearAlgebraError.self) { _ = try pivotedQR(a, keeping: 25) }
  }

  @Test func pivotedQRRevealsRank() throws {
    // Rank 6 matrix, 80x50.
    let a = try gemm(gaussianMatrix(80, 6, seed: 203), gaussianMatrix(6, 50, seed: 204))
    let f = try pivotedQR(a)
    // |R_66| / |R_00| is rounding noise: <= 1e-5 * sqrt(80).
    #expect(abs(f.r[6, 6]) / abs(f.r[0, 0]) <= tolerance(80))
    #expect(abs(f.r[5, 5]) / abs(f.r[0, 0]) > 1e-3)
  }

  @Test func pivotedLQFactorizesRowPermutedMatrix() throws {
    for (m, n) in [(60, 90), (90, 60)] {
      let a = gaussianMatrix(m, n, seed: 205)
      let f = try pivotedLQ(a)
      #expect(f.permutation.sorted() == Array(0..<m))
      var pa = a
      for (i, source) in f.permutation.enumerated() {
        for j in 0..<n { pa[i, j] = a[source, j] }
      }
      // ‖LQ − PA‖_F / ‖A‖_F <= 1e-5 * sqrt(max(m, n)).
      #expect(relativeError(try gemm(f.l, f.q), pa) <= tolerance(max(m, n)))
      #expect(try orthonormalRowsError(f.q) <= tolerance(max(m, n)))
      #expect(maxAboveDiagonal(f.l) == 0)
    }
  }

  @Test func emptyMatrices() throws {
    let f = try qr(Matrix(rows: 4, columns: 0))
    #expect(f.q.rows == 4 && f.q.columns == 0 && f.r.rows == 0 && f.r.columns == 0)
    let g = try lq(Matrix(rows: 0, columns: 3))
    #expect(g.l.rows == 0 && g.q.rows == 0 && g.q.columns == 3)
    let p = try pivotedQR(Matrix(rows: 0, columns: 3))
    #expect(p.permutation == [0, 1, 2])
  }
}
