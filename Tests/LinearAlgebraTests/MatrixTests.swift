import Testing

@testable import LinearAlgebra

@Suite("Matrix")
struct MatrixTests {
  @Test func rowMajorInitRearrangesIntoColumnMajor() throws {
    // [[1, 2, 3], [4, 5, 6]] row-major.
    let m = try Matrix(rows: 2, columns: 3, rowMajor: [1, 2, 3, 4, 5, 6] as [Float])
    #expect(m.storage == [1, 4, 2, 5, 3, 6])
    #expect(m[1, 0] == 4)
    #expect(m[0, 2] == 3)
    #expect(m.rowMajorStorage() == [1, 2, 3, 4, 5, 6])
    #expect(m.row(1) == [4, 5, 6])
    #expect(m.column(2) == [3, 6])
  }

  @Test func rowMajorInitAcceptsNonContiguousCollections() throws {
    let m = try Matrix(rows: 2, columns: 2, rowMajor: (1...4).lazy.map { Float($0) })
    #expect(m.storage == [1, 3, 2, 4])
  }

  @Test func transposeOfRowMajorSharesTheBufferAndIsTheTranspose() throws {
    let a = gaussianMatrix(37, 53, seed: 1)
    let rowMajor = a.rowMajorStorage()  // a as a row-major [37, 53] weight
    let wt = try Matrix.transposeOfRowMajor(rowMajor, rows: 37, columns: 53)
    #expect(wt.rows == 53 && wt.columns == 37)
    #expect(wt.storage == rowMajor)  // no rearrangement
    #expect(wt == a.transposed())  // exact: pure data movement
    #expect(try Matrix(rows: 37, columns: 53, rowMajor: rowMajor) == a)
  }

  @Test func transposedTwiceIsIdentityForOddShapes() {
    for (m, n) in [(1, 1), (33, 65), (64, 31), (0, 5), (5, 0)] {
      let a = gaussianMatrix(m, n, seed: UInt64(m * 100 + n))
      let t = a.transposed()
      #expect(t.rows == n && t.columns == m)
      for i in 0..<m { for j in 0..<n { #expect(t[j, i] == a[i, j]) } }
      #expect(t.transposed() == a)
    }
  }

  @Test func identityDiagonalAndNorm() throws {
    let i3 = try Matrix.identity(3)
    #expect(i3.storage == [1, 0, 0, 0, 1, 0, 0, 0, 1])
    #expect(Matrix(diagonal: [1, 1, 1]) == i3)
    // ‖I₃‖_F = √3; exact up to one rounding of the square root.
    #expect(abs(i3.frobeniusNorm - Float(3).squareRoot()) <= 1e-6)
    let m = try Matrix(rows: 2, columns: 2, columnMajor: [3, 0, 0, 4])
    #expect(m.frobeniusNorm == 5)
    // No overflow: each square exceeds Float.max, the Double accumulator copes.
    let big = try Matrix(rows: 1, columns: 2, repeating: 3e30)
    #expect(abs(big.frobeniusNorm / (3e30 * Float(2).squareRoot()) - 1) <= 1e-6)
  }

  @Test func submatrix() throws {
    let a = gaussianMatrix(6, 5, seed: 2)
    let b = try a.submatrix(rows: 1..<4, columns: 2..<5)
    #expect(b.rows == 3 && b.columns == 3)
    for i in 0..<3 { for j in 0..<3 { #expect(b[i, j] == a[i + 1, j + 2]) } }
    #expect(
      try a.submatrix(rows: 0..<6, columns: 1..<3)
        == Matrix(
          rows: 6, columns: 2, columnMajor: a.column(1) + a.column(2)))
    #expect(throws: LinearAlgebraError.self) { try a.submatrix(rows: 0..<7, columns: 0..<1) }
  }

  @Test func invalidShapesThrowInsteadOfTrapping() {
    #expect(throws: LinearAlgebraError.invalidShape(rows: 2, columns: 3, elementCount: 5)) {
      try Matrix(rows: 2, columns: 3, columnMajor: [Float](repeating: 0, count: 5))
    }
    #expect(throws: LinearAlgebraError.invalidShape(rows: 2, columns: 2, elementCount: 3)) {
      try Matrix(rows: 2, columns: 2, rowMajor: [1, 2, 3] as [Float])
    }
    #expect(throws: LinearAlgebraError.invalidShape(rows: -1, columns: 3, elementCount: 0)) {
      try Matrix(rows: -1, columns: 3)
    }
    #expect(throws: LinearAlgebraError.self) { try Matrix.identity(-2) }
    #expect(throws: LinearAlgebraError.self) {
      try Matrix.transposeOfRowMajor([1, 2, 3], rows: 2, columns: 2)
    }
    #expect(throws: LinearAlgebraError.self) {
      try Matrix(rows: Int.max, columns: 2)  // rows * columns overflows
    }
  }

  @Test func nonFiniteDetection() throws {
    var a = gaussianMatrix(4, 3, seed: 3)
    #expect(a.isFinite)
    a[2, 1] = .infinity
    #expect(!a.isFinite)
    #expect(a.firstNonFiniteIndex?.row == 2)
    #expect(a.firstNonFiniteIndex?.column == 1)
  }

  @Test func descriptionIsReadable() throws {
    let m = try Matrix(rows: 2, columns: 2, rowMajor: [1, 2, 3, 4] as [Float])
    #expect(m.description == "Matrix(2x2)\n  [1.0, 2.0]\n  [3.0, 4.0]")
    #expect(gaussianMatrix(9, 2, seed: 1).description == "Matrix(9x2)")
  }
}
