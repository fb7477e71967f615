import Foundation
import LinearAlgebra

/// The factors A (out x k) and B (k x in) of a weight W ~ A B, row-major, from the
/// decompositions the factorizing passes (factorize, lowrank-residual) compute.
enum Factorization {
  /// Row-major A (out x k) = U_k sqrt(S_k) and B (k x in) = sqrt(S_k) V_k^T from the SVD of
  /// W^T = V S U^T (`u` is V, `vt` is U^T).
  static func svdFactors(u: Matrix, singularValues: [Float], vt: Matrix, rows: Int) -> (
    a: [Float], b: [Float]
  ) {
    let k = singularValues.count
    let roots = singularValues.map { Float(Double($0).squareRoot()) }
    // Row-major A (out x k) is the column-major storage of A^T = sqrt(S) U^T (k x out).
    var a = vt.storage
    for j in 0..<rows { for i in 0..<k { a[i + j * k] *= roots[i] } }
    // Row-major B (k x in) is the column-major storage of B^T = V sqrt(S) (in x k).
    var b = u.storage
    let inputs = u.rows
    for i in 0..<k { for r in 0..<inputs { b[r + i * inputs] *= roots[i] } }
    return (a, b)
  }

  /// W^T P = Q R (sgeqp3) gives W = P R^T Q^T: A = P R_k^T (out x k), B = Q_k^T (k x in),
  /// whose rows are orthonormal.
  static func lqFactors(_ wt: Matrix, rank k: Int, rows: Int, columns: Int) throws -> (
    a: [Float], b: [Float]
  ) {
    let f = try pivotedQR(wt, keeping: k)
    // Row-major B (k x in) is the column-major storage of Q_k (in x k).
    let b = Array(f.q.storage.prefix(columns * k))
    // Row-major A (out x k): row perm[j] of A is column j of R_k (k x out).
    var a = [Float](repeating: 0, count: rows * k)
    for j in 0..<rows {
      for i in 0..<k { a[f.permutation[j] * k + i] = f.r[i, j] }
    }
    return (a, b)
  }
}
