import CLapack

/// General matrix multiply through `cblas_sgemm`, in place:
/// `c = alpha * op(a) * op(b) + beta * c`, where `op(x)` is `x` or `xᵀ`.
///
/// Shapes: `op(a)` is `m x k`, `op(b)` is `k x n`, and `c` must already be `m x n`.
/// When `beta == 0` the previous contents of `c` are ignored (even NaN). NaN/Inf in
/// `a` or `b` are not rejected: BLAS propagates them without harm.
///
/// Throws ``LinearAlgebraError/dimensionMismatch(operation:details:)`` when the shapes
/// do not agree and ``LinearAlgebraError/tooLargeForLAPACK(operation:details:)`` when a
/// dimension does not fit in a 32-bit `blasint`.
public func gemm(
  _ a: Matrix, _ b: Matrix, transposeA: Bool = false, transposeB: Bool = false,
  alpha: Float = 1, beta: Float = 0, into c: inout Matrix
) throws(LinearAlgebraError) {
  let operation = "gemm"
  let (m, ka) = transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
  let (kb, n) = transposeB ? (b.columns, b.rows) : (b.rows, b.columns)
  guard ka == kb else {
    throw .dimensionMismatch(
      operation: operation,
      details: "op(A) is \(m)x\(ka) but op(B) is \(kb)x\(n) (inner dimensions differ)")
  }
  guard c.rows == m, c.columns == n else {
    throw .dimensionMismatch(
      operation: operation,
      details: "op(A)·op(B) is \(m)x\(n) but C is \(c.rows)x\(c.columns)")
  }
  let k = ka
  for (value, name) in [
    (a.rows, "rows of A"), (a.columns, "columns of A"),
    (b.rows, "rows of B"), (b.columns, "columns of B"),
  ] {
    _ = try LAPACKInterop.int32(value, name, operation: operation)
  }
  if m == 0 || n == 0 { return }
  if k == 0 || alpha == 0 {
    // Nothing to multiply: C = beta * C (BLAS semantics: beta == 0 clears C, NaN too).
    c.withUnsafeMutableBufferPointer { buffer in
      if beta == 0 {
        buffer.update(repeating: 0)
      } else if beta != 1 {
        for i in buffer.indices { buffer[i] *= beta }
      }
    }
    return
  }
  let lda = Int32(max(1, a.rows))
  let ldb = Int32(max(1, b.rows))
  let ldc = Int32(max(1, m))
  let opA = transposeA ? CblasTrans : CblasNoTrans
  let opB = transposeB ? CblasTrans : CblasNoTrans
  a.storage.withUnsafeBufferPointer { pa in
    b.storage.withUnsafeBufferPointer { pb in
      c.withUnsafeMutableBufferPointer { pc in
        cblas_sgemm(
          CblasColMajor, opA, opB, Int32(m), Int32(n), Int32(k),
          alpha, pa.baseAddress, lda, pb.baseAddress, ldb,
          beta, pc.baseAddress, ldc)
      }
    }
  }
}

/// General matrix multiply returning a new matrix: `alpha * op(a) * op(b)`.
/// See ``gemm(_:_:transposeA:transposeB:alpha:beta:into:)`` for the rules.
public func gemm(
  _ a: Matrix, _ b: Matrix, transposeA: Bool = false, transposeB: Bool = false,
  alpha: Float = 1
) throws(LinearAlgebraError) -> Matrix {
  let m = transposeA ? a.columns : a.rows
  let n = transposeB ? b.rows : b.columns
  var c = Matrix(uncheckedRows: m, columns: n)
  try gemm(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: 0, into: &c)
  return c
}

/// Sets the number of threads OpenBLAS uses inside each BLAS/LAPACK call.
///
/// Set it to 1 when your own code already runs several matrices in parallel (for
/// example one task per tensor); otherwise each call also spawns OpenBLAS threads and
/// the machine is oversubscribed. Values below 1 are treated as 1. The setting is
/// process-wide: change it before starting parallel work, not during.
public func setBLASThreads(_ count: Int) {
  let clamped = Int32(clamping: max(1, count))
  openblas_set_num_threads(clamped)
}

/// The number of threads OpenBLAS currently uses per call.
public func blasThreadCount() -> Int {
  Int(openblas_get_num_threads())
}

/// OpenBLAS build configuration (version, target CPU, threading), for diagnostics.
public func blasConfiguration() -> String {
  guard let raw = openblas_get_config() else { return "unknown" }
  return String(cString: raw)
}

/// Row-major matrix multiply on raw buffers through `cblas_sgemm`:
/// `c = alpha * a * op(b) + beta * c`, where `a` is `m x k` with row stride `lda`, `op(b)` is
/// `b` (`k x n`, row stride `ldb`) or, with `transposeB`, `bᵀ` for a `b` of `n x k` (a linear
/// layer's weight: `x Wᵀ`), and `c` is `m x n` with row stride `ldc`. The strides let a caller
/// multiply one head's columns of a wider matrix in place.
///
/// When `beta == 0` the previous contents of `c` are ignored. Throws
/// ``LinearAlgebraError/tooLargeForLAPACK(operation:details:)`` when a size or stride does
/// not fit in a 32-bit `blasint`.
public func gemmRowMajor(
  m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
  transposeB: Bool, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float = 1, beta: Float = 0
) throws(LinearAlgebraError) {
  let operation = "gemmRowMajor"
  let sizes = (
    try LAPACKInterop.int32(m, "m", operation: operation), try LAPACKInterop.int32(n, "n", operation: operation),
    try LAPACKInterop.int32(k, "k", operation: operation)
  )
  let strides = (
    try LAPACKInterop.int32(max(1, lda), "lda", operation: operation),
    try LAPACKInterop.int32(max(1, ldb), "ldb", operation: operation),
    try LAPACKInterop.int32(max(1, ldc), "ldc", operation: operation)
  )
  if m == 0 || n == 0 { return }
  cblas_sgemm(
    CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, sizes.0, sizes.1, sizes.2, alpha, a,
    strides.0, b, strides.1, beta, c, strides.2)
}
