import CLapack

/// Eigen-decomposition of a symmetric matrix: `A · V = V · diag(eigenvalues)`.
public struct SymmetricEigenDecomposition: Sendable, Equatable {
  /// The eigenvalues in ascending order.
  public var eigenvalues: [Float]
  /// `n x n`, orthonormal; column `j` is the eigenvector of `eigenvalues[j]`.
  public var eigenvectors: Matrix
}

/// Eigenvalues and eigenvectors of a symmetric matrix through `ssyevd`
/// (divide and conquer, `jobz = 'V'`, `uplo = 'L'`).
///
/// Only the lower triangle is read; the upper triangle is assumed to mirror it and is
/// not checked. The whole matrix must still be finite.
public func symmetricEigen(_ a: Matrix) throws(LinearAlgebraError) -> SymmetricEigenDecomposition {
  guard a.isSquare else {
    throw .dimensionMismatch(
      operation: "symmetricEigen",
      details: "needs a square matrix, got \(a.rows)x\(a.columns)")
  }
  let (n, _) = try LAPACKInterop.prepare(a, operation: "symmetricEigen")
  if n == 0 {
    return SymmetricEigenDecomposition(eigenvalues: [], eigenvectors: a)
  }
  let layout = LAPACKInterop.layout
  let jobz = LAPACKInterop.flag("V")
  let uplo = LAPACKInterop.flag("L")
  var packed = a.storage
  var w = [Float](repeating: 0, count: Int(n))
  var query: Float = 0
  var iquery: Int32 = 0
  var info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_ssyevd_work(layout, jobz, uplo, n, pa.baseAddress, n, &w, &query, -1, &iquery, -1)
  }
  try LAPACKInterop.check(info, .ssyevd)
  let lwork = try LAPACKInterop.workspaceCount(query, operation: "symmetricEigen")
  let liwork = try LAPACKInterop.int32(
    max(1, Int(iquery)), "integer workspace", operation: "symmetricEigen")
  var scratch = [Float](repeating: 0, count: Int(lwork))
  var iscratch = [Int32](repeating: 0, count: Int(liwork))
  info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_ssyevd_work(
      layout, jobz, uplo, n, pa.baseAddress, n, &w, &scratch, lwork, &iscratch, liwork)
  }
  try LAPACKInterop.check(info, .ssyevd)
  return SymmetricEigenDecomposition(
    eigenvalues: w, eigenvectors: Matrix(uncheckedRows: Int(n), columns: Int(n), storage: packed))
}

/// Cholesky factor of a symmetric positive definite matrix through `spotrf`
/// (`uplo = 'L'`): returns the lower-triangular `L` with `A = L · Lᵀ` (the strict
/// upper triangle is zero).
///
/// Only the lower triangle of `a` is read. Throws
/// ``LinearAlgebraError/notPositiveDefinite(routine:leadingMinor:)`` naming the first
/// leading minor that is not positive.
public func cholesky(_ a: Matrix) throws(LinearAlgebraError) -> Matrix {
  guard a.isSquare else {
    throw .dimensionMismatch(
      operation: "cholesky",
      details: "needs a square matrix, got \(a.rows)x\(a.columns)")
  }
  let (n, _) = try LAPACKInterop.prepare(a, operation: "cholesky")
  if n == 0 { return a }
  var packed = a.storage
  let info = packed.withUnsafeMutableBufferPointer { pa in
    LAPACKE_spotrf_work(LAPACKInterop.layout, LAPACKInterop.flag("L"), n, pa.baseAddress, n)
  }
  try LAPACKInterop.check(info, .spotrf)
  let size = Int(n)
  for j in 1..<max(1, size) {
    for i in 0..<j { packed[i + j * size] = 0 }
  }
  return Matrix(uncheckedRows: size, columns: size, storage: packed)
}

/// The upper Cholesky factor U of the inverse of a symmetric positive definite matrix:
/// A⁻¹ = Uᵀ U, row-major `[n, n]` with zeros below the diagonal. This is the factor GPTQ and
/// SparseGPT read their updates from (Frantar et al. 2022, section 3.3). Computed without
/// forming A⁻¹: with J the order-reversing permutation, J A J = L Lᵀ (`spotrf`), so
/// A = (J L J)(J L J)ᵀ with J L J upper triangular, and U = (J L J)⁻¹ = J L⁻¹ J (`strtri`):
/// 2n³/3 flops where Cholesky, inverse and Cholesky again (torch's `cholesky`,
/// `cholesky_inverse`, `cholesky(upper=True)`, the reference's way) take 4n³/3. `a` is
/// symmetric; only its lower triangle in column-major terms is read. Throws
/// `notPositiveDefinite` naming the failing minor (of J A J).
public func upperCholeskyOfInverse(_ a: [Float], n: Int) throws(LinearAlgebraError) -> [Float] {
  var result = a
  try upperCholeskyOfInverse(inPlace: &result, n: n)
  return result
}

/// `upperCholeskyOfInverse(_:n:)` in the storage of `a` (no n x n copy: GPTQ's H can be large).
/// On a throw, `a` holds a partial factorization.
public func upperCholeskyOfInverse(inPlace a: inout [Float], n: Int) throws(LinearAlgebraError) {
  guard a.count == n * n else {
    throw .dimensionMismatch(operation: "upperCholeskyOfInverse", details: "\(a.count) values for \(n)x\(n)")
  }
  if n == 0 { return }
  let size = try LAPACKInterop.int32(n, "n", operation: "upperCholeskyOfInverse")
  let lower = LAPACKInterop.flag("L")
  // J A J: reversing the whole buffer reverses rows and columns at once.
  a.reverse()
  var info = a.withUnsafeMutableBufferPointer {
    LAPACKE_spotrf_work(LAPACKInterop.layout, lower, size, $0.baseAddress, size)
  }
  try LAPACKInterop.check(info, .spotrf)
  info = a.withUnsafeMutableBufferPointer {
    LAPACKE_strtri_work(LAPACKInterop.layout, lower, LAPACKInterop.flag("N"), size, $0.baseAddress, size)
  }
  try LAPACKInterop.check(info, .strtri)
  // L⁻¹ is column-major lower: read row-major it is (L⁻¹)ᵀ; reversed, that is Uᵀ (row-major), so
  // U is its transpose, with zeros below the diagonal.
  a.reverse()
  for i in 0..<n {
    for j in (i + 1)..<max(i + 1, n) {
      a[i * n + j] = a[j * n + i]
      a[j * n + i] = 0
    }
  }
}

/// Solves X·L = B for X in place of `b` (row-major [rows, n]), L the lower-triangular factor
/// `cholesky(_:)` returns (n x n). One `strsm`.
public func solveRightLowerTriangular(_ b: inout [Float], rows: Int, lower: Matrix) throws(LinearAlgebraError) {
  let n = lower.rows
  guard lower.isSquare, b.count == rows * n else {
    throw .dimensionMismatch(
      operation: "solveRightLowerTriangular",
      details: "B has \(b.count) values for \(rows)x\(n), L is \(lower.rows)x\(lower.columns)")
  }
  if rows == 0 || n == 0 { return }
  let (m32, n32) = (
    try LAPACKInterop.int32(rows, "rows", operation: "solveRightLowerTriangular"),
    try LAPACKInterop.int32(n, "n", operation: "solveRightLowerTriangular")
  )
  // L's column-major storage read row-major is Lᵀ (upper): X · (Lᵀ)ᵀ = B.
  lower.storage.withUnsafeBufferPointer { l in
    b.withUnsafeMutableBufferPointer { x in
      cblas_strsm(
        CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, m32, n32, 1, l.baseAddress, n32,
        x.baseAddress, n32)
    }
  }
}
