import CLapack

/// Adds `xᵀ x` to the upper triangle of the symmetric `columns x columns` matrix `gram`
/// (row-major, Double) through `cblas_dsyrk`: `x` is `rows x columns`, row-major. The lower
/// triangle is left as it is. (`calibrate --hessians` accumulates each batch this way.)
public func accumulateGram(
  _ x: UnsafeBufferPointer<Double>, rows: Int, columns: Int, into gram: UnsafeMutableBufferPointer<Double>
) {
  precondition(x.count >= rows * columns && gram.count >= columns * columns)
  guard rows > 0, columns > 0 else { return }
  cblas_dsyrk(
    CblasRowMajor, CblasUpper, CblasTrans, blasint(columns), blasint(rows), 1, x.baseAddress, blasint(columns), 1,
    gram.baseAddress, blasint(columns))
}
