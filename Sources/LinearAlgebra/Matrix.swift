/// A dense Float32 matrix stored in **column-major** order, the layout LAPACK and
/// BLAS use natively.
///
/// Element (`row`, `column`) lives at `storage[row + column * rows]`.
///
/// ## Row-major data (safetensors, PyTorch)
///
/// Checkpoint weights are stored row-major: a linear layer's weight `W` of shape
/// `[out, in]` is `out` rows of `in` values each. The same bytes read column-major are
/// the `in x out` matrix `Wᵀ`. Two ways to bring such data in:
///
/// - ``init(rows:columns:rowMajor:)`` copies and rearranges the data, giving `W`
///   itself (`out x in`). Costs one pass over the data.
/// - ``transposeOfRowMajor(_:rows:columns:)`` takes the buffer as it is and returns
///   `Wᵀ` (`in x out`) without touching the elements (the array is shared
///   copy-on-write). Use it when an algorithm can work on `Wᵀ` just as well: for
///   example the LQ factorization of `W` is the QR factorization of `Wᵀ`, and the
///   SVD of `Wᵀ` is the SVD of `W` with `U` and `V` swapped.
///
/// Likewise ``storage`` of a matrix `M` is the row-major buffer of `Mᵀ`, and
/// ``rowMajorStorage()`` returns the row-major buffer of `M` itself.
///
/// Subscripts trap on out-of-range indices, like `Array`; everything else that takes
/// sizes or data validates them and throws ``LinearAlgebraError``.
public struct Matrix: Sendable, Equatable {
  /// Number of rows.
  public let rows: Int
  /// Number of columns.
  public let columns: Int
  /// The elements in column-major order; always `rows * columns` long.
  public private(set) var storage: [Float]

  /// Trusted initializer: `storage.count == rows * columns` is guaranteed by the caller.
  init(uncheckedRows rows: Int, columns: Int, storage: [Float]) {
    assert(rows >= 0 && columns >= 0 && storage.count == rows * columns)
    self.rows = rows
    self.columns = columns
    self.storage = storage
  }

  /// Trusted initializer for a zero-filled matrix.
  init(uncheckedRows rows: Int, columns: Int) {
    self.init(
      uncheckedRows: rows, columns: columns,
      storage: [Float](repeating: 0, count: rows * columns))
  }

  /// Validates a shape and returns its element count.
  static func elementCount(rows: Int, columns: Int, given: Int? = nil) throws(LinearAlgebraError)
    -> Int
  {
    guard rows >= 0, columns >= 0 else {
      throw .invalidShape(rows: rows, columns: columns, elementCount: given ?? 0)
    }
    let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
    guard !overflow else {
      throw .invalidShape(rows: rows, columns: columns, elementCount: given ?? 0)
    }
    if let given, given != count {
      throw .invalidShape(rows: rows, columns: columns, elementCount: given)
    }
    return count
  }

  /// A `rows x columns` matrix with every element equal to `value`.
  public init(rows: Int, columns: Int, repeating value: Float = 0) throws(LinearAlgebraError) {
    let count = try Self.elementCount(rows: rows, columns: columns)
    self.init(
      uncheckedRows: rows, columns: columns,
      storage: [Float](repeating: value, count: count))
  }

  /// A matrix from column-major data (no rearrangement).
  /// Throws ``LinearAlgebraError/invalidShape(rows:columns:elementCount:)`` when
  /// `columnMajor.count != rows * columns`.
  public init(rows: Int, columns: Int, columnMajor: [Float]) throws(LinearAlgebraError) {
    _ = try Self.elementCount(rows: rows, columns: columns, given: columnMajor.count)
    self.init(uncheckedRows: rows, columns: columns, storage: columnMajor)
  }

  /// A matrix from row-major data (`rowMajor[row * columns + column]`), copied into
  /// column-major order. For a safetensors weight of shape `[out, in]` pass
  /// `rows: out, columns: in` to get `W`.
  public init<C: Collection<Float>>(rows: Int, columns: Int, rowMajor: C)
    throws(LinearAlgebraError)
  {
    let count = try Self.elementCount(rows: rows, columns: columns, given: rowMajor.count)
    var storage = [Float](repeating: 0, count: count)
    let copied: Void? = rowMajor.withContiguousStorageIfAvailable { source in
      storage.withUnsafeMutableBufferPointer { destination in
        Self.transpose(source, rows: rows, columns: columns, into: destination)
      }
    }
    if copied == nil {
      let contiguous = Array(rowMajor)
      contiguous.withUnsafeBufferPointer { source in
        storage.withUnsafeMutableBufferPointer { destination in
          Self.transpose(source, rows: rows, columns: columns, into: destination)
        }
      }
    }
    self.init(uncheckedRows: rows, columns: columns, storage: storage)
  }

  /// Treats a row-major `rows x columns` buffer as the column-major
  /// `columns x rows` matrix it already is — the **transpose** of the row-major
  /// matrix — without moving any element (the array is shared copy-on-write).
  ///
  /// For a safetensors weight `W` of shape `[out, in]`, call
  /// `transposeOfRowMajor(data, rows: out, columns: in)` to get `Wᵀ` (`in x out`).
  public static func transposeOfRowMajor(_ rowMajor: [Float], rows: Int, columns: Int)
    throws(LinearAlgebraError) -> Matrix
  {
    _ = try elementCount(rows: rows, columns: columns, given: rowMajor.count)
    return Matrix(uncheckedRows: columns, columns: rows, storage: rowMajor)
  }

  /// The `n x n` identity matrix.
  public static func identity(_ n: Int) throws(LinearAlgebraError) -> Matrix {
    var result = try Matrix(rows: n, columns: n)
    result.storage.withUnsafeMutableBufferPointer { buffer in
      for i in 0..<n { buffer[i + i * n] = 1 }
    }
    return result
  }

  /// A `values.count x values.count` matrix with `values` on its diagonal.
  public init(diagonal values: [Float]) {
    let n = values.count
    var storage = [Float](repeating: 0, count: n * n)
    for i in 0..<n { storage[i + i * n] = values[i] }
    self.init(uncheckedRows: n, columns: n, storage: storage)
  }

  /// `rows * columns`.
  public var count: Int { storage.count }
  /// True when the matrix has no elements.
  public var isEmpty: Bool { storage.isEmpty }
  /// True when `rows == columns`.
  public var isSquare: Bool { rows == columns }
  /// `(rows, columns)`.
  public var shape: (rows: Int, columns: Int) { (rows, columns) }

  /// Element access; traps on out-of-range indices like `Array`.
  public subscript(row: Int, column: Int) -> Float {
    get {
      precondition(
        row >= 0 && row < rows && column >= 0 && column < columns,
        "Matrix index (\(row), \(column)) out of range for \(rows)x\(columns)")
      return storage[row + column * rows]
    }
    set {
      precondition(
        row >= 0 && row < rows && column >= 0 && column < columns,
        "Matrix index (\(row), \(column)) out of range for \(rows)x\(columns)")
      storage[row + column * rows] = newValue
    }
  }

  /// Column `j` as an array. Traps when `j` is out of range.
  public func column(_ j: Int) -> [Float] {
    precondition(j >= 0 && j < columns, "Column \(j) out of range for \(rows)x\(columns)")
    return Array(storage[(j * rows)..<((j + 1) * rows)])
  }

  /// Row `i` as an array. Traps when `i` is out of range.
  public func row(_ i: Int) -> [Float] {
    precondition(i >= 0 && i < rows, "Row \(i) out of range for \(rows)x\(columns)")
    return (0..<columns).map { storage[i + $0 * rows] }
  }

  /// The elements in row-major order (the layout safetensors expects).
  public func rowMajorStorage() -> [Float] {
    transposed().storage
  }

  /// The transpose, as a new column-major matrix (a blocked, cache-friendly copy).
  public func transposed() -> Matrix {
    var result = [Float](repeating: 0, count: count)
    storage.withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { destination in
        // `source` is column-major rows x columns, which is row-major columns x rows.
        Self.transpose(source, rows: columns, columns: rows, into: destination)
      }
    }
    return Matrix(uncheckedRows: columns, columns: rows, storage: result)
  }

  /// The block `rows x columns` (half-open ranges) as a new matrix.
  public func submatrix(rows rowRange: Range<Int>, columns columnRange: Range<Int>)
    throws(LinearAlgebraError) -> Matrix
  {
    guard rowRange.lowerBound >= 0, rowRange.upperBound <= rows,
      columnRange.lowerBound >= 0, columnRange.upperBound <= columns
    else {
      throw .invalidArgument(
        operation: "submatrix",
        details: "rows \(rowRange), columns \(columnRange) outside a \(rows)x\(columns) matrix")
    }
    return block(rows: rowRange, columns: columnRange)
  }

  /// Unchecked `submatrix`.
  func block(rows rowRange: Range<Int>, columns columnRange: Range<Int>) -> Matrix {
    let m = rowRange.count
    let n = columnRange.count
    if rowRange == 0..<rows {
      // Whole columns: one contiguous slice.
      let slice = storage[(columnRange.lowerBound * rows)..<(columnRange.upperBound * rows)]
      return Matrix(uncheckedRows: m, columns: n, storage: Array(slice))
    }
    var result = [Float](repeating: 0, count: m * n)
    storage.withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { destination in
        for (j, column) in columnRange.enumerated() {
          let from = column * rows + rowRange.lowerBound
          for i in 0..<m { destination[i + j * m] = source[from + i] }
        }
      }
    }
    return Matrix(uncheckedRows: m, columns: n, storage: result)
  }

  /// The Frobenius norm `sqrt(Σ aᵢⱼ²)`, accumulated in Double (no overflow for any
  /// finite Float input). NaN if any element is NaN.
  public var frobeniusNorm: Float {
    var sum: Double = 0
    storage.withUnsafeBufferPointer { buffer in
      for x in buffer { sum += Double(x) * Double(x) }
    }
    return Float(sum.squareRoot())
  }

  /// True when no element is NaN or ±Inf.
  public var isFinite: Bool { firstNonFiniteIndex == nil }

  /// (row, column) of the first NaN or ±Inf element in storage order, or nil.
  public var firstNonFiniteIndex: (row: Int, column: Int)? {
    let index = storage.withUnsafeBufferPointer { buffer -> Int? in
      for i in buffer.indices where !buffer[i].isFinite { return i }
      return nil
    }
    guard let index, rows > 0 else { return nil }
    return (index % rows, index / rows)
  }

  /// Calls `body` with the column-major elements.
  public func withUnsafeBufferPointer<R, E: Error>(
    _ body: (UnsafeBufferPointer<Float>) throws(E) -> R
  ) throws(E) -> R {
    try storage.withUnsafeBufferPointer(body)
  }

  /// Calls `body` with the column-major elements, mutable. The element count cannot
  /// change.
  public mutating func withUnsafeMutableBufferPointer<R, E: Error>(
    _ body: (inout UnsafeMutableBufferPointer<Float>) throws(E) -> R
  ) throws(E) -> R {
    try storage.withUnsafeMutableBufferPointer(body)
  }

  /// Writes the transpose of the row-major `rows x columns` `source` (equivalently:
  /// copies it into column-major order) into `destination`, in cache-sized blocks.
  static func transpose(
    _ source: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
    into destination: UnsafeMutableBufferPointer<Float>
  ) {
    guard let src = source.baseAddress, let dst = destination.baseAddress else { return }
    let block = 32
    var i0 = 0
    while i0 < rows {
      let i1 = min(i0 + block, rows)
      var j0 = 0
      while j0 < columns {
        let j1 = min(j0 + block, columns)
        for i in i0..<i1 {
          for j in j0..<j1 {
            dst[i + j * rows] = src[i * columns + j]
          }
        }
        j0 = j1
      }
      i0 = i1
    }
  }
}

extension Matrix: CustomStringConvertible {
  /// `Matrix(2x3)` followed by the rows when the matrix is small (at most 8x8).
  public var description: String {
    guard rows <= 8, columns <= 8 else { return "Matrix(\(rows)x\(columns))" }
    let body = (0..<rows).map { i in
      "  [" + row(i).map { "\($0)" }.joined(separator: ", ") + "]"
    }
    return (["Matrix(\(rows)x\(columns))"] + body).joined(separator: "\n")
  }
}
