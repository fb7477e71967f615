import Foundation

/// Everything that can go wrong in the LinearAlgebra module.
///
/// No function in this module traps on bad input: shapes are validated and inputs are
/// checked for NaN/Inf before any LAPACK routine runs, and every non-zero LAPACK `info`
/// is turned into one of these cases. The `errorDescription` of each case says what
/// happened and what to do about it.
public enum LinearAlgebraError: Error, LocalizedError, Equatable, Sendable {
  /// A matrix was built from a buffer whose length does not match `rows * columns`,
  /// or with a negative dimension, or with a size that overflows `Int`.
  case invalidShape(rows: Int, columns: Int, elementCount: Int)

  /// The operands of `operation` have incompatible shapes (or the operation needs a
  /// square matrix and got a rectangular one). `details` names the shapes involved.
  case dimensionMismatch(operation: String, details: String)

  /// A scalar argument of `operation` is out of range (for example a truncation rank
  /// larger than the number of singular values).
  case invalidArgument(operation: String, details: String)

  /// The input of `operation` holds NaN or ±Inf at (`row`, `column`) (0-based).
  /// LAPACK is never called on such input: it can loop for a long time or return
  /// meaningless factors.
  case nonFiniteInput(operation: String, row: Int, column: Int)

  /// A dimension, element count or workspace size does not fit LAPACK's 32-bit
  /// integers (`lapack_int` is `int32_t` in Debian's LAPACKE/OpenBLAS build).
  case tooLargeForLAPACK(operation: String, details: String)

  /// LAPACK rejected argument number `argument` of `routine` (1-based, counted in the
  /// routine's Fortran argument list; 0 means LAPACKE rejected the matrix layout).
  /// This corresponds to `info = -argument` and is always a bug in this module,
  /// because arguments are validated before the call.
  case illegalArgument(routine: String, argument: Int)

  /// An iterative LAPACK routine (`sgesdd`, `sgesvd`, `ssyevd`) returned `info > 0`:
  /// its QR-iteration / divide-and-conquer step did not converge.
  case didNotConverge(routine: String, info: Int)

  /// `spotrf` returned `info > 0`: the leading minor of order `leadingMinor` is not
  /// positive definite, so the Cholesky factorization does not exist.
  case notPositiveDefinite(routine: String, leadingMinor: Int)

  /// LAPACKE could not allocate its internal workspace (`info` -1010 or -1011).
  case outOfMemory(routine: String)

  /// Any other non-zero `info` that has no more specific case.
  case lapackFailure(routine: String, info: Int)

  /// The raw LAPACK `info` value this error stands for, when it came from LAPACK.
  /// Illegal-argument errors report the Fortran convention `-argument`.
  public var lapackInfo: Int? {
    switch self {
    case .illegalArgument(_, let argument): return -argument
    case .didNotConverge(_, let info), .lapackFailure(_, let info): return info
    case .notPositiveDefinite(_, let minor): return minor
    case .outOfMemory: return Int(LAPACKInterop.workMemoryError)
    default: return nil
    }
  }

  /// The LAPACK routine that failed, when the error came from LAPACK.
  public var routine: String? {
    switch self {
    case .illegalArgument(let routine, _), .didNotConverge(let routine, _),
      .notPositiveDefinite(let routine, _), .outOfMemory(let routine),
      .lapackFailure(let routine, _):
      return routine
    default: return nil
    }
  }

  public var errorDescription: String? {
    switch self {
    case .invalidShape(let rows, let columns, let count):
      if rows < 0 || columns < 0 {
        return "Invalid matrix shape \(rows)x\(columns): dimensions must not be negative."
      }
      return "Invalid matrix shape \(rows)x\(columns): expected \(rows)*\(columns) elements "
        + "but the buffer holds \(count). Check the tensor shape against its data."
    case .dimensionMismatch(let operation, let details):
      return "\(operation): incompatible dimensions: \(details)."
    case .invalidArgument(let operation, let details):
      return "\(operation): invalid argument: \(details)."
    case .nonFiniteInput(let operation, let row, let column):
      return "\(operation): input contains NaN or infinity at row \(row), column \(column). "
        + "LAPACK is not called on non-finite data; clean or skip this tensor."
    case .tooLargeForLAPACK(let operation, let details):
      return "\(operation): too large for 32-bit LAPACK indexing: \(details). "
        + "Split the matrix or process it with another method."
    case .illegalArgument(let routine, let argument):
      let which = argument == 0 ? "the matrix layout argument" : "argument \(argument)"
      return "\(routine): \(which) had an illegal value (info = \(-argument)). "
        + "This is a bug in the LinearAlgebra module (arguments are validated before the "
        + "call); please report it together with the matrix shape."
    case .didNotConverge(let routine, let info):
      return "\(routine) did not converge (info = \(info)). "
        + Self.convergenceDetail(routine: routine, info: info)
    case .notPositiveDefinite(let routine, let minor):
      return "\(routine): the matrix is not positive definite: the leading minor of order "
        + "\(minor) is not positive (info = \(minor)). Add a small multiple of the identity "
        + "(diagonal regularisation) or use symmetricEigen instead."
    case .outOfMemory(let routine):
      return "\(routine): LAPACKE could not allocate its workspace. Free memory or process "
        + "smaller matrices."
    case .lapackFailure(let routine, let info):
      return "\(routine) failed with info = \(info)."
    }
  }

  private static func convergenceDetail(routine: String, info: Int) -> String {
    switch routine {
    case "sgesdd":
      return "The divide-and-conquer bidiagonal SVD failed; svd() retries with sgesvd "
        + "automatically. If this reaches you, the matrix is likely badly scaled: rescale it."
    case "sgesvd":
      return "\(info) superdiagonals of the intermediate bidiagonal form did not converge "
        + "to zero. The matrix is likely badly scaled or nearly degenerate: rescale it or "
        + "compute in higher precision."
    case "ssyevd":
      return "The tridiagonal eigensolver failed on an intermediate submatrix. Check that "
        + "the matrix is symmetric and reasonably scaled."
    default:
      return "Rescale the input or compute in higher precision."
    }
  }
}
