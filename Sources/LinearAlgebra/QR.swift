import CLapack

/// A thin QR factorization `A = Q · R` of an `m x n` matrix, `k = min(m, n)`.
public struct QRFactorization: Sendable, Equatable {
  /// `m x k`, orthonormal columns (`Qᵀ Q = I`).
  public var q: Matrix
  /// `k x n`, upper triangular (upper trapezoidal when `n > m`).
  public var r: Matrix
}

/// A thin LQ factorization `A = L · Q` of an `m x n` matrix, `k = min(m, n)`.
public struct LQFactorization: Sendable, Equatable {
  /// `m x k`, lower triangular (lower trapezoidal when `m > n`).
  public var l: Matrix
  /// `k x n`, orthonormal rows (`Q Qᵀ = I`).
  public var q: Matrix
}

/// A thin column-pivoted QR factorization `A · P = Q · R`.
public struct PivotedQRFactorization: Sendable, Equatable {
  /// `m x k`, orthonormal columns.
  public var q: Matrix
  /// `k x n`, upper triangular with `|R[0,0]| ≥ |R[1,1]| ≥ …`.
  public var r: Matrix
  /// 0-based column permutation: column `j` of `A · P` is column `permutation[j]`
  /// of `A`.
  public var permutation: [Int]
}

/// A thin row-pivoted LQ factorization `P · A = L · Q` (the transpose of a
/// column-pivoted QR of `Aᵀ`).
public struct PivotedLQFactorization: Sendable, Equatable {
  /// `m x k`, lower triangular with `|L[0,0]| ≥ |L[1,1]| ≥ …`.
  public var l: Matrix
  /// `k x n`, orthonormal rows.
  public var q: Matrix
  /// 0-based row permutation: row `i` of `P · A` is row `permutation[i]` of `A`.
  public var permutation: [Int]
}

/// Thin QR through `sgeqrf` (Householder) followed by `sorgqr` (forms `Q`).
public func qr(_ a: Matrix) throws(LinearAlgebraError) -> QRFactorization {
  let (m, n) = try LAPACKInterop.prepare(a, operation: "qr")
  let k = min(m, n)
  var packed = a.storage
  let tau = try geqrf(&packed, m: m, n: n, k: k)
  let r = upperTriangle(packed, rows: Int(m), columns: Int(n), keepRows: Int(k))
  let q = try orgqr(&packed, m: m, k: k, tau: tau)
  return QRFactorization(q: q, r: r)
}

/// Thin LQ through `sgelqf` followed by `sorglq` (forms `Q`).
///
/// ``lqViaTransposedQR(_:)`` computes the same factorization and is usually 2–3x
/// faster; this version exists as the reference.
public func lq(_ a: Matrix) throws(LinearAlgebraError) -> LQFactorization {
  let (m, n) = try LAPACKInterop.prepare(a, operation: "lq")
  let k = min(m, n)
  let rows = Int(m)
  let columns = Int(n)
  let kk = Int(k)
  var packed = a.storage
  let layout = LAPACKInterop.layout
  let lda = LAPACKInterop.leading(m)
  var tau = [Float](repeating: 0, count: kk)
  if k > 0 {
    var query: Float = 0
    var info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgelqf_work(layout, m, n, pa.baseAddress, lda, &tau, &query, -1)
    }
    try LAPACKInterop.check(info, .sgelqf)
    let lwork = try LAPACKInterop.workspaceCount(query, operation: "lq")
    var scratch = [Float](repeating: 0, count: Int(lwork))
    info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgelqf_work(layout, m, n, pa.baseAddress, lda, &tau, &scratch, lwork)
    }
    try LAPACKInterop.check(info, .sgelqf)
  }
  // L: the lower triangle of the first k columns.
  var l = [Float](repeating: 0, count: rows * kk)
  for j in 0..<kk {
    for i in j..<rows { l[i + j * rows] = packed[i + j * rows] }
  }
  // Q: sorglq overwrites the first k rows (leading dimension m) with Q.
  if k > 0 {
    var query: Float = 0
    var info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sorglq_work(layout, k, n, k, pa.baseAddress, lda, &tau, &query, -1)
    }
    try LAPACKInterop.check(info, .sorglq)
    let lwork = try LAPACKInterop.workspaceCount(query, operation: "lq")
    var scratch = [Float](repeating: 0, count: Int(lwork))
    info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sorglq_work(layout, k, n, k, pa.baseAddress, lda, &tau, &scratch, lwork)
    }
    try LAPACKInterop.check(info, .sorglq)
  }
  let packedMatrix = Matrix(uncheckedRows: rows, columns: columns, storage: packed)
  let q = packedMatrix.block(rows: 0..<kk, columns: 0..<columns)
  return LQFactorization(l: Matrix(uncheckedRows: rows, columns: kk, storage: l), q: q)
}

/// Thin LQ of `a` computed as the QR factorization of `aᵀ`:
/// `Aᵀ = Q₁ R` gives `A = Rᵀ Q₁ᵀ`, so `L = Rᵀ` and `Q = Q₁ᵀ`.
///
/// Same result as ``lq(_:)`` up to rounding (both use Householder reflections), but
/// `sgeqrf` is markedly better optimised than `sgelqf` in OpenBLAS (2–3x on this
/// project's machines), which outweighs the two O(mn) transposes.
///
/// If your data is a row-major weight `W` (safetensors `[out, in]`), you do not need
/// the first transpose: ``Matrix/transposeOfRowMajor(_:rows:columns:)`` already gives
/// `Wᵀ`, and `qr` of it yields the LQ factors of `W` as `L = Rᵀ`, `Q = Q₁ᵀ`.
public func lqViaTransposedQR(_ a: Matrix) throws(LinearAlgebraError) -> LQFactorization {
  try LAPACKInterop.requireFinite(a, operation: "lqViaTransposedQR")
  let factors = try qr(a.transposed())
  return LQFactorization(l: factors.r.transposed(), q: factors.q.transposed())
}

/// Column-pivoted thin QR through `sgeqp3` followed by `sorgqr`: `A · P = Q · R`,
/// with the columns chosen greedily by remaining norm, so `|diag(R)|` is
/// non-increasing and reveals the numerical rank.
///
/// With `keeping: r`, only the first `r` columns of `Q` and rows of `R` are formed (the
/// pivoting still sees the whole matrix): what a rank-`r` truncation needs, at a fraction
/// of the cost of forming all of `Q`.
public func pivotedQR(_ a: Matrix, keeping rank: Int? = nil) throws(LinearAlgebraError) -> PivotedQRFactorization {
  let (m, n) = try LAPACKInterop.prepare(a, operation: "pivotedQR")
  let k = min(m, n)
  if let rank, rank < 0 || rank > Int(k) {
    throw .invalidArgument(operation: "pivotedQR", details: "rank \(rank) outside 0...\(k)")
  }
  let kept = Int32(rank ?? Int(k))
  var packed = a.storage
  var jpvt = [Int32](repeating: 0, count: Int(n))  // 0 = every column is free
  var tau = [Float](repeating: 0, count: Int(k))
  if k > 0 {
    let layout = LAPACKInterop.layout
    let lda = LAPACKInterop.leading(m)
    var query: Float = 0
    var info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgeqp3_work(layout, m, n, pa.baseAddress, lda, &jpvt, &tau, &query, -1)
    }
    try LAPACKInterop.check(info, .sgeqp3)
    let lwork = try LAPACKInterop.workspaceCount(query, operation: "pivotedQR")
    var scratch = [Float](repeating: 0, count: Int(lwork))
    info = packed.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgeqp3_work(layout, m, n, pa.baseAddress, lda, &jpvt, &tau, &scratch, lwork)
    }
    try LAPACKInterop.check(info, .sgeqp3)
  }
  // LAPACK permutations are 1-based; with k == 0 jpvt is untouched (identity).
  let permutation = k > 0 ? jpvt.map { Int($0) - 1 } : Array(0..<Int(n))
  let r = upperTriangle(packed, rows: Int(m), columns: Int(n), keepRows: Int(kept))
  let q = try orgqr(&packed, m: m, k: kept, tau: Array(tau.prefix(Int(kept))))
  return PivotedQRFactorization(q: q, r: r, permutation: permutation)
}

/// Row-pivoted thin LQ, `P · A = L · Q`, computed as ``pivotedQR(_:)`` of `Aᵀ`
/// (`Aᵀ P = Q₁ R` ⇒ `Pᵀ A = Rᵀ Q₁ᵀ`). Rows are chosen greedily by remaining norm, so
/// `|diag(L)|` is non-increasing.
public func pivotedLQ(_ a: Matrix) throws(LinearAlgebraError) -> PivotedLQFactorization {
  try LAPACKInterop.requireFinite(a, operation: "pivotedLQ")
  let factors = try pivotedQR(a.transposed())
  return PivotedLQFactorization(
    l: factors.r.transposed(), q: factors.q.transposed(), permutation: factors.permutation)
}

// MARK: - Shared QR steps

/// `sgeqrf` on the column-major `m x n` buffer; returns `tau`.
private func geqrf(_ packed: inout [Float], m: Int32, n: Int32, k: Int32)
  throws(LinearAlgebraError) -> [Float]
{
  var tau = [Float](repeating: 0, count: Int(k))
  guard k > 0 else { return tau }
  let layout = LAPACKInterop.layout
  let lda = LAPACKInterop.leading(m)
  var query: Float = 0
  var info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgeqrf_work(layout, m, n, pa.baseAddress, lda, &tau, &query, -1)
  }
  try LAPACKInterop.check(info, .sgeqrf)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "qr")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgeqrf_work(layout, m, n, pa.baseAddress, lda, &tau, &scratch, lwork)
  }
  try LAPACKInterop.check(info, .sgeqrf)
  return tau
}

/// `sorgqr` on the first `k` columns of the packed `m x n` buffer (consumed):
/// returns the thin `Q`, `m x k`.
private func orgqr(_ packed: inout [Float], m: Int32, k: Int32, tau: [Float])
  throws(LinearAlgebraError) -> Matrix
{
  let rows = Int(m)
  let kk = Int(k)
  // Column-major: the first k columns are a prefix of the buffer.
  packed.removeSubrange((rows * kk)...)
  guard k > 0 else { return Matrix(uncheckedRows: rows, columns: 0) }
  let layout = LAPACKInterop.layout
  let lda = LAPACKInterop.leading(m)
  var tau = tau
  var query: Float = 0
  var info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sorgqr_work(layout, m, k, k, pa.baseAddress, lda, &tau, &query, -1)
  }
  try LAPACKInterop.check(info, .sorgqr)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "qr")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sorgqr_work(layout, m, k, k, pa.baseAddress, lda, &tau, &scratch, lwork)
  }
  try LAPACKInterop.check(info, .sorgqr)
  return Matrix(uncheckedRows: rows, columns: kk, storage: packed)
}

/// The upper triangle of the first `keepRows` rows of a column-major buffer.
private func upperTriangle(_ packed: [Float], rows: Int, columns: Int, keepRows: Int) -> Matrix {
  var r = [Float](repeating: 0, count: keepRows * columns)
  for j in 0..<columns {
    for i in 0..<min(j + 1, keepRows) {
      r[i + j * keepRows] = packed[i + j * rows]
    }
  }
  return Matrix(uncheckedRows: keepRows, columns: columns, storage: r)
}
