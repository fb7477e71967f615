import CLapack

/// A basis of the column space of `a` (`m x n`) from its LU factorization with partial
/// pivoting, `A = P · L · U` (`sgetrf`): the `m x min(m, n)` matrix `P · L`, unit lower
/// trapezoidal up to its row order, every entry at most 1 in magnitude.
///
/// When `a` has full column rank, `P · L` spans the same columns as `a` (`U` is
/// invertible), so it can stand in for the `Q` of a thin QR where only the span matters:
/// the normalisation between the power iterations of a randomized SVD (as scikit-learn's
/// `randomized_svd` does). It is not orthonormal. `sgetrf` costs about a quarter of a
/// thin QR (`sgeqrf` + `sorgqr`) and needs no workspace.
///
/// A column whose pivot is exactly zero (a rank-deficient `a`) keeps its unit diagonal
/// and zeros below it: `sgetrf`'s `info > 0` is not an error here.
public func luBasis(_ a: Matrix) throws(LinearAlgebraError) -> Matrix {
  let (m, n) = try LAPACKInterop.prepare(a, operation: "luBasis")
  let k = Int(min(m, n))
  let rows = Int(m)
  guard k > 0 else { return Matrix(uncheckedRows: rows, columns: 0) }
  var packed = a.storage
  var pivots = [Int32](repeating: 0, count: k)
  let info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgetrf_work(LAPACKInterop.layout, m, n, pa.baseAddress, LAPACKInterop.leading(m), &pivots)
  }
  if info < 0 { try LAPACKInterop.check(info, .sgetrf) }
  // L: unit diagonal, the strict lower part of the first k columns, zeros above.
  packed.removeSubrange((rows * k)...)
  for j in 0..<k {
    for i in 0..<j { packed[i + j * rows] = 0 }
    packed[j + j * rows] = 1
  }
  // sgetrf applied the interchanges as P_k ... P_1 A = L U, so P · L = P_1 (... (P_k L)):
  // undo them last to first (1-based: row i was swapped with row pivots[i]).
  for i in stride(from: k - 1, through: 0, by: -1) {
    let p = Int(pivots[i]) - 1
    if p != i {
      for j in 0..<k { packed.swapAt(i + j * rows, p + j * rows) }
    }
  }
  return Matrix(uncheckedRows: rows, columns: k, storage: packed)
}
