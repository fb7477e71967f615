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

/// Adds `xᵀ x` to the upper triangle of `gram` (row-major `columns x columns`, Double) with the
/// batch's own products summed in Float32 by `cblas_ssyrk` into `scratch` (resized as needed):
/// twice the rate of the Double path and no Double copy of the batch, while batches are still
/// summed in Double. The lower triangle is left as it is.
public func accumulateGram(
  _ x: UnsafeBufferPointer<Float>, rows: Int, columns: Int, into gram: UnsafeMutableBufferPointer<Double>,
  scratch: inout [Float]
) {
  precondition(x.count >= rows * columns && gram.count >= columns * columns)
  guard rows > 0, columns > 0 else { return }
  if scratch.count < columns * columns { scratch = [Float](repeating: 0, count: columns * columns) }
  scratch.withUnsafeMutableBufferPointer { s in
    cblas_ssyrk(
      CblasRowMajor, CblasUpper, CblasTrans, blasint(columns), blasint(rows), 1, x.baseAddress, blasint(columns), 0,
      s.baseAddress, blasint(columns))
    for i in 0..<columns {
      let row = i * columns
      for j in i..<columns { gram[row + j] += Double(s[row + j]) }
    }
  }
}
