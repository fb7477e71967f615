import Testing

@testable import LinearAlgebra

@Suite("LU basis")
struct LUTests {
  /// `luBasis(A)` is `P · L` from `A = P · L · U`: `m x min(m, n)`, entries at most 1 in
  /// magnitude, one pivot row per column (1 there, 0 to its right), and it spans A's columns.
  @Test(arguments: testShapes)
  func luBasisSpansTheColumnsWithUnitPivots(shape: (rows: Int, columns: Int)) throws {
    let a = gaussianMatrix(shape.rows, shape.columns, seed: 210)
    let k = min(shape.rows, shape.columns)
    let b = try luBasis(a)
    #expect(b.rows == shape.rows && b.columns == k)
    #expect(b.storage.allSatisfy { abs($0) <= 1 })
    var pivotRows = Set<Int>()
    for j in 0..<k {
      let row = (0..<b.rows).first { i in
        !pivotRows.contains(i) && b[i, j] == 1 && ((j + 1)..<k).allSatisfy { b[i, $0] == 0 }
      }
      #expect(row != nil, "column \(j) has no pivot row")
      if let row { pivotRows.insert(row) }
    }
    // The same span: A minus its projection on span(B), relative to A,
    // <= 1e-5 * sqrt(max(m, n)) (A is Gaussian, so of full rank).
    let q = try qr(b).q
    let projected = try gemm(q, try gemm(q, a, transposeA: true))
    #expect(relativeError(projected, a) <= tolerance(max(shape.rows, shape.columns)))
  }

  /// sgetrf's info > 0 (an exactly zero pivot) is not an error: a zero column of A gives a
  /// unit column in the basis, and the other columns are still spanned.
  @Test func rankDeficientInputStillGivesABasis() throws {
    var a = gaussianMatrix(50, 6, seed: 211)
    for i in 0..<50 { a[i, 2] = 0 }
    let b = try luBasis(a)
    #expect(b.rows == 50 && b.columns == 6)
    let q = try qr(b).q
    let projected = try gemm(q, try gemm(q, a, transposeA: true))
    // Relative residual <= 1e-5 * sqrt(50).
    #expect(relativeError(projected, a) <= tolerance(50))
    #expect(try luBasis(try Matrix(rows: 4, columns: 3)).storage.allSatisfy { $0 == 0 || $0 == 1 })
  }

  @Test func emptyAndNonFiniteInput() throws {
    #expect(try luBasis(try Matrix(rows: 0, columns: 3)).columns == 0)
    #expect(try luBasis(try Matrix(rows: 5, columns: 0)).rows == 5)
    var a = gaussianMatrix(4, 3, seed: 212)
    a[1, 2] = .nan
    #expect(throws: LinearAlgebraError.nonFiniteInput(operation: "luBasis", row: 1, column: 2)) { try luBasis(a) }
  }
}
