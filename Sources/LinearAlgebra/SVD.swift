import CLapack

/// The LAPACK driver that produced an SVD.
public enum SVDRoutine: String, Sendable, Equatable {
  /// Divide and conquer (`sgesdd`): the default, far faster on large matrices.
  case sgesdd
  /// QR iteration (`sgesvd`): the fallback when `sgesdd` does not converge.
  case sgesvd
}

/// A thin singular value decomposition `A = U · diag(S) · Vt` of an `m x n` matrix,
/// with `k = min(m, n)`.
public struct SVD: Sendable, Equatable {
  /// Left singular vectors, `m x k`, orthonormal columns.
  public var u: Matrix
  /// Singular values, `k` of them, non-negative and in descending order.
  public var singularValues: [Float]
  /// Right singular vectors transposed, `k x n`, orthonormal rows.
  public var vt: Matrix
  /// Which LAPACK routine produced this result.
  public var routine: SVDRoutine
  /// When `routine == .sgesvd`: the `info > 0` that `sgesdd` reported before the
  /// fallback. Nil otherwise.
  public var sgesddFailureInfo: Int?

  /// Number of singular triplets (`k`).
  public var rank: Int { singularValues.count }

  /// The best rank-`rank` approximation (Eckart–Young): the first `rank` columns of
  /// `U`, values of `S` and rows of `Vt`. Throws when `rank` is negative or larger than
  /// the number of singular values.
  public func truncated(rank newRank: Int) throws(LinearAlgebraError) -> SVD {
    guard newRank >= 0, newRank <= rank else {
      throw .invalidArgument(
        operation: "SVD.truncated",
        details: "rank \(newRank) outside 0...\(rank)")
    }
    return SVD(
      u: u.block(rows: 0..<u.rows, columns: 0..<newRank),
      singularValues: Array(singularValues.prefix(newRank)),
      vt: vt.block(rows: 0..<newRank, columns: 0..<vt.columns),
      routine: routine, sgesddFailureInfo: sgesddFailureInfo)
  }

  /// The Frobenius error of keeping only the first `rank` triplets:
  /// `sqrt(Σ_{i ≥ rank} σᵢ²)` (Eckart–Young), accumulated in Double.
  /// Ranks beyond the number of singular values give 0; negative ranks count as 0.
  public func truncationError(keeping keptRank: Int) -> Float {
    var sum: Double = 0
    for sigma in singularValues.dropFirst(max(0, keptRank)) {
      sum += Double(sigma) * Double(sigma)
    }
    return Float(sum.squareRoot())
  }

  /// `U · diag(S) · Vt`, an `m x n` matrix.
  public func reconstructed() throws(LinearAlgebraError) -> Matrix {
    var scaled = u
    let m = u.rows
    scaled.withUnsafeMutableBufferPointer { buffer in
      for (j, sigma) in singularValues.enumerated() {
        for i in 0..<m { buffer[i + j * m] *= sigma }
      }
    }
    return try gemm(scaled, vt)
  }
}

/// Thin SVD of `a` through `sgesdd` (`jobz = 'S'`): `U` is `m x k`, `S` has `k`
/// values in descending order, `Vt` is `k x n`, `k = min(m, n)`.
///
/// If `sgesdd` reports non-convergence (`info > 0`) the SVD is recomputed with
/// `sgesvd`; ``SVD/routine`` tells which one produced the result. Throws
/// ``LinearAlgebraError/nonFiniteInput(operation:row:column:)`` for NaN/Inf input and
/// ``LinearAlgebraError/didNotConverge(routine:info:)`` if `sgesvd` fails as well.
public func svd(_ a: Matrix) throws(LinearAlgebraError) -> SVD {
  try svd(a, simulateSgesddFailure: false)
}

/// Test hook: with `simulateSgesddFailure` the `sgesdd` call is skipped and treated as
/// if it returned `info = 1`, so the `sgesvd` fallback path runs.
func svd(_ a: Matrix, simulateSgesddFailure: Bool) throws(LinearAlgebraError) -> SVD {
  let (m, n) = try LAPACKInterop.prepare(a, operation: "svd")
  let k = min(m, n)
  if k == 0 {
    return SVD(
      u: Matrix(uncheckedRows: a.rows, columns: 0), singularValues: [],
      vt: Matrix(uncheckedRows: 0, columns: a.columns), routine: .sgesdd)
  }
  if !simulateSgesddFailure {
    do {
      return try gesdd(a, m: m, n: n, k: k)
    } catch .didNotConverge(routine: "sgesdd", let info) {
      return try gesvd(a, m: m, n: n, k: k, sgesddInfo: info)
    }
  }
  return try gesvd(a, m: m, n: n, k: k, sgesddInfo: 1)
}

private func gesdd(_ a: Matrix, m: Int32, n: Int32, k: Int32) throws(LinearAlgebraError) -> SVD {
  let layout = LAPACKInterop.layout
  let jobz = LAPACKInterop.flag("S")
  var work = a.storage
  var s = [Float](repeating: 0, count: Int(k))
  var u = [Float](repeating: 0, count: Int(m) * Int(k))
  var vt = [Float](repeating: 0, count: Int(k) * Int(n))
  var iwork = [Int32](repeating: 0, count: 8 * Int(k))
  let lda = LAPACKInterop.leading(m)
  let ldu = LAPACKInterop.leading(m)
  let ldvt = LAPACKInterop.leading(k)
  var query: Float = 0
  var info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesdd_work(
      layout, jobz, m, n, pa.baseAddress, lda, &s, &u, ldu, &vt, ldvt, &query, -1, &iwork)
  }
  try LAPACKInterop.check(info, .sgesdd)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "svd")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesdd_work(
      layout, jobz, m, n, pa.baseAddress, lda, &s, &u, ldu, &vt, ldvt, &scratch, lwork, &iwork)
  }
  try LAPACKInterop.check(info, .sgesdd)
  return SVD(
    u: Matrix(uncheckedRows: Int(m), columns: Int(k), storage: u), singularValues: s,
    vt: Matrix(uncheckedRows: Int(k), columns: Int(n), storage: vt), routine: .sgesdd)
}

private func gesvd(
  _ a: Matrix, m: Int32, n: Int32, k: Int32, sgesddInfo: Int
) throws(LinearAlgebraError) -> SVD {
  let layout = LAPACKInterop.layout
  let job = LAPACKInterop.flag("S")
  var work = a.storage
  var s = [Float](repeating: 0, count: Int(k))
  var u = [Float](repeating: 0, count: Int(m) * Int(k))
  var vt = [Float](repeating: 0, count: Int(k) * Int(n))
  let lda = LAPACKInterop.leading(m)
  let ldu = LAPACKInterop.leading(m)
  let ldvt = LAPACKInterop.leading(k)
  var query: Float = 0
  var info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesvd_work(
      layout, job, job, m, n, pa.baseAddress, lda, &s, &u, ldu, &vt, ldvt, &query, -1)
  }
  try LAPACKInterop.check(info, .sgesvd)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "svd")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesvd_work(
      layout, job, job, m, n, pa.baseAddress, lda, &s, &u, ldu, &vt, ldvt, &scratch, lwork)
  }
  try LAPACKInterop.check(info, .sgesvd)
  return SVD(
    u: Matrix(uncheckedRows: Int(m), columns: Int(k), storage: u), singularValues: s,
    vt: Matrix(uncheckedRows: Int(k), columns: Int(n), storage: vt), routine: .sgesvd,
    sgesddFailureInfo: sgesddInfo)
}

/// Singular values only (`sgesdd` with `jobz = 'N'`), `min(m, n)` of them in
/// descending order. Much cheaper than ``svd(_:)``: no singular vectors are formed.
/// Falls back to `sgesvd` (`jobu = jobvt = 'N'`) if `sgesdd` does not converge.
public func singularValues(_ a: Matrix) throws(LinearAlgebraError) -> [Float] {
  try singularValues(a, simulateSgesddFailure: false)
}

/// Test hook, as for ``svd(_:simulateSgesddFailure:)``.
func singularValues(_ a: Matrix, simulateSgesddFailure: Bool) throws(LinearAlgebraError)
  -> [Float]
{
  let (m, n) = try LAPACKInterop.prepare(a, operation: "singularValues")
  let k = min(m, n)
  if k == 0 { return [] }
  let layout = LAPACKInterop.layout
  let none = LAPACKInterop.flag("N")
  let lda = LAPACKInterop.leading(m)
  var s = [Float](repeating: 0, count: Int(k))
  var dummyU = [Float](repeating: 0, count: 1)  // U and Vt are not referenced.
  var dummyVt = [Float](repeating: 0, count: 1)
  var query: Float = 0

  if !simulateSgesddFailure {
    var work = a.storage
    var iwork = [Int32](repeating: 0, count: 8 * Int(k))
    var info = work.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgesdd_work(
        layout, none, m, n, pa.baseAddress, lda, &s, &dummyU, 1, &dummyVt, 1, &query, -1, &iwork)
    }
    try LAPACKInterop.check(info, .sgesdd)
    let lwork = try LAPACKInterop.workspaceCount(query, operation: "singularValues")
    var scratch = [Float](repeating: 0, count: Int(lwork))
    info = work.withUnsafeMutableBufferPointer { pa in
      LAPACKE_sgesdd_work(
        layout, none, m, n, pa.baseAddress, lda, &s, &dummyU, 1, &dummyVt, 1, &scratch, lwork,
        &iwork)
    }
    if info <= 0 {
      try LAPACKInterop.check(info, .sgesdd)
      return s
    }
    // info > 0: sgesdd did not converge; fall through to sgesvd on a fresh copy.
  }

  var work = a.storage
  var info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesvd_work(
      layout, none, none, m, n, pa.baseAddress, lda, &s, &dummyU, 1, &dummyVt, 1, &query, -1)
  }
  try LAPACKInterop.check(info, .sgesvd)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "singularValues")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  info = work.withUnsafeMutableBufferPointer { pa in
    LAPACKE_sgesvd_work(
      layout, none, none, m, n, pa.baseAddress, lda, &s, &dummyU, 1, &dummyVt, 1, &scratch, lwork)
  }
  try LAPACKInterop.check(info, .sgesvd)
  return s
}
