import Foundation
import TestSupport

@testable import LinearAlgebra

/// An `rows x columns` matrix of independent standard normal entries.
func gaussianMatrix(_ rows: Int, _ columns: Int, seed: UInt64) -> Matrix {
  var rng = SplitMix64(seed: seed)
  let values = (0..<(rows * columns)).map { _ in rng.gaussian() }
  return Matrix(uncheckedRows: rows, columns: columns, storage: values)
}

/// A random symmetric matrix `(B + Bᵀ) / 2`.
func symmetricMatrix(_ n: Int, seed: UInt64) -> Matrix {
  let b = gaussianMatrix(n, n, seed: seed)
  var a = b
  for j in 0..<n {
    for i in 0..<n { a[i, j] = 0.5 * (b[i, j] + b[j, i]) }
  }
  return a
}

/// Reference product with a plain triple loop, accumulated in Double.
func naiveProduct(_ a: Matrix, _ b: Matrix) -> Matrix {
  var c = Matrix(uncheckedRows: a.rows, columns: b.columns)
  for i in 0..<a.rows {
    for j in 0..<b.columns {
      var sum: Double = 0
      for p in 0..<a.columns { sum += Double(a[i, p]) * Double(b[p, j]) }
      c[i, j] = Float(sum)
    }
  }
  return c
}

/// `a - b` (same shapes).
func difference(_ a: Matrix, _ b: Matrix) -> Matrix {
  precondition(a.rows == b.rows && a.columns == b.columns)
  return Matrix(
    uncheckedRows: a.rows, columns: a.columns,
    storage: zip(a.storage, b.storage).map { $0 - $1 })
}

/// `‖a - b‖_F / ‖b‖_F` (or the absolute error when `b` is zero).
func relativeError(_ a: Matrix, _ b: Matrix) -> Float {
  let reference = b.frobeniusNorm
  let error = difference(a, b).frobeniusNorm
  return reference > 0 ? error / reference : error
}

/// Float32 tolerance for a relative Frobenius error on problems of size `n`:
/// `1e-5 * sqrt(n)` (about 100 ulps at n = 1, growing like typical rounding drift).
func tolerance(_ n: Int) -> Float { 1e-5 * Float(n).squareRoot() }

/// `‖XᵀX − I‖_F / ‖I‖_F` for a matrix that should have orthonormal columns.
func orthonormalColumnsError(_ x: Matrix) throws -> Float {
  let gram = try gemm(x, x, transposeA: true)
  return relativeError(gram, try .identity(x.columns))
}

/// `‖XXᵀ − I‖_F / ‖I‖_F` for a matrix that should have orthonormal rows.
func orthonormalRowsError(_ x: Matrix) throws -> Float {
  let gram = try gemm(x, x, transposeB: true)
  return relativeError(gram, try .identity(x.rows))
}

/// Largest |element| strictly above the diagonal.
func maxAboveDiagonal(_ x: Matrix) -> Float {
  var result: Float = 0
  for j in 0..<x.columns {
    for i in 0..<min(j, x.rows) { result = max(result, abs(x[i, j])) }
  }
  return result
}

/// Largest |element| strictly below the diagonal.
func maxBelowDiagonal(_ x: Matrix) -> Float {
  var result: Float = 0
  for j in 0..<x.columns where j + 1 < x.rows {
    for i in (j + 1)..<x.rows { result = max(result, abs(x[i, j])) }
  }
  return result
}

/// `x · diag(d)`: scales column j by d[j].
func scaleColumns(_ x: Matrix, _ d: [Float]) -> Matrix {
  var y = x
  for j in 0..<x.columns { for i in 0..<x.rows { y[i, j] *= d[j] } }
  return y
}

/// `diag(d) · x`: scales row i by d[i].
func scaleRows(_ x: Matrix, _ d: [Float]) -> Matrix {
  var y = x
  for j in 0..<x.columns { for i in 0..<x.rows { y[i, j] *= d[i] } }
  return y
}

/// Matrix shapes used across the suite: tall, wide, square, and thin extremes.
let testShapes: [(rows: Int, columns: Int)] = [
  (200, 120), (120, 200), (150, 150), (300, 7), (7, 300), (1, 40), (40, 1), (1, 1),
]
