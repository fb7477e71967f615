import CLapack

/// The LAPACK routines this module calls, used to map `info` values to errors.
enum LAPACKRoutine: String, Sendable {
  case sgesdd, sgesvd, sgeqrf, sorgqr, sgelqf, sorglq, sgeqp3, sgetrf, ssyevd, spotrf, spotri, strtri
}

/// Shared plumbing for the LAPACKE calls: 32-bit size checks, workspace sizing,
/// `info` mapping and the NaN/Inf guard.
enum LAPACKInterop {
  static let workMemoryError: Int32 = -1010  // LAPACK_WORK_MEMORY_ERROR
  static let transposeMemoryError: Int32 = -1011  // LAPACK_TRANSPOSE_MEMORY_ERROR

  static let layout = Int32(LAPACK_COL_MAJOR)

  /// A LAPACK character argument ("S", "N", "V", "L", ...).
  @inline(__always)
  static func flag(_ c: Unicode.Scalar) -> CChar { CChar(UInt8(ascii: c)) }

  /// `value` as a `lapack_int`, or a `tooLargeForLAPACK` error.
  static func int32(
    _ value: Int, _ what: @autoclosure () -> String, operation: String
  ) throws(LinearAlgebraError) -> Int32 {
    guard value >= 0, value <= Int(Int32.max) else {
      throw .tooLargeForLAPACK(operation: operation, details: "\(what()) = \(value)")
    }
    return Int32(value)
  }

  /// Checks that `a` can be handed to LAPACK: every dimension and the element count
  /// fit in `Int32` (LAPACK computes some workspace sizes and offsets as `m * n` in
  /// 32-bit integers), and all elements are finite. Returns (m, n) as `Int32`.
  static func prepare(
    _ a: Matrix, operation: String
  ) throws(LinearAlgebraError) -> (m: Int32, n: Int32) {
    let m = try int32(a.rows, "rows", operation: operation)
    let n = try int32(a.columns, "columns", operation: operation)
    _ = try int32(a.count, "rows * columns", operation: operation)
    try requireFinite(a, operation: operation)
    return (m, n)
  }

  static func requireFinite(_ a: Matrix, operation: String) throws(LinearAlgebraError) {
    if let (row, column) = a.firstNonFiniteIndex {
      throw .nonFiniteInput(operation: operation, row: row, column: column)
    }
  }

  /// Leading dimension for a column-major buffer with `rows` rows (LAPACK wants >= 1).
  @inline(__always)
  static func leading(_ rows: Int32) -> Int32 { max(1, rows) }

  /// Converts the optimal workspace size that LAPACK returns in `work[0]` (a Float)
  /// into a count. Rounds up with a small margin, because a Float cannot represent
  /// every integer above 2^24 and older LAPACK versions rounded the size down.
  static func workspaceCount(
    _ query: Float, minimum: Int = 1, operation: String
  ) throws(LinearAlgebraError) -> Int32 {
    let requested = Double(query)
    guard requested.isFinite, requested >= 0 else {
      throw .tooLargeForLAPACK(operation: operation, details: "workspace query returned \(query)")
    }
    let padded = (requested * (1 + 1.0 / 1_048_576)).rounded(.up) + 1
    let count = max(Double(minimum), padded)
    guard count <= Double(Int32.max) else {
      throw .tooLargeForLAPACK(
        operation: operation, details: "workspace of \(Int(requested)) floats")
    }
    return Int32(count)
  }

  /// Maps a LAPACKE `info` to an error. LAPACKE's `_work` functions report an illegal
  /// argument as `info = -(fortranArgument + 1)`, because they count `matrix_layout` as
  /// argument 1; this converts back to the Fortran argument number.
  static func check(_ info: Int32, _ routine: LAPACKRoutine) throws(LinearAlgebraError) {
    if info == 0 { return }
    let name = routine.rawValue
    if info == workMemoryError || info == transposeMemoryError {
      throw .outOfMemory(routine: name)
    }
    if info < 0 {
      throw .illegalArgument(routine: name, argument: Int(-info) - 1)
    }
    switch routine {
    case .sgesdd, .sgesvd, .ssyevd:
      throw .didNotConverge(routine: name, info: Int(info))
    case .spotrf, .spotri:
      throw .notPositiveDefinite(routine: name, leadingMinor: Int(info))
    case .sgeqrf, .sorgqr, .sgelqf, .sorglq, .sgeqp3, .sgetrf, .strtri:
      throw .lapackFailure(routine: name, info: Int(info))
    }
  }
}
