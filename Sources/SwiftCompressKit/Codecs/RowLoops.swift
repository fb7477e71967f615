import CKernels
import CheckpointIO
import Foundation

/// The row loops every encoder shares: rows read as Float32 (in place when they can be),
/// in parallel over fixed blocks, with the error of each row's reconstruction summed in a
/// fixed order; plus the checks for non-finite weights.
enum RowLoops {
  /// Calls `body` for each row of `input` with its values as Float32 and a buffer for the
  /// row's reconstruction, and accumulates the error between the two. Rows are decoded
  /// one at a time, so memory stays at one row beyond the outputs. Non-finite weights are
  /// rejected, naming the element.
  static func forEachRow(
    _ input: TensorInput, rows: Int, columns: Int, baseline: Bool = false,
    _ body: (Int, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) ->
      Void
  ) throws(SwiftCompressError) -> (error: ErrorAccumulator, baseline: ErrorAccumulator?) {
    let dtype = input.descriptor.dtype
    let rowBytes = columns * dtype.bitsPerElement / 8
    var values = [Float](repeating: 0, count: columns)
    var reconstruction = [Float](repeating: 0, count: columns)
    var alternative = [Float](repeating: 0, count: baseline ? columns : 0)
    var accumulator = ErrorAccumulator()
    var baselineAccumulator = ErrorAccumulator()
    for row in 0..<rows {
      try values.withUnsafeMutableBufferPointer { (v) throws(SwiftCompressError) in
        Float32Conversion.convert(
          UnsafeRawBufferPointer(rebasing: input.bytes[(row * rowBytes)..<((row + 1) * rowBytes)]), dtype: dtype,
          count: columns, into: v)
        if let bad = v.firstIndex(where: { !$0.isFinite }) {
          throw .invalidTensor(
            name: input.descriptor.name,
            reason: "element [\(row), \(bad)] is \(v[bad]); quantization needs finite weights\(nonFiniteAdvice)")
        }
        reconstruction.withUnsafeMutableBufferPointer { r in
          alternative.withUnsafeMutableBufferPointer { b in
            body(row, UnsafeBufferPointer(v), r, b)
            accumulator.add(reference: UnsafeBufferPointer(v), reconstruction: UnsafeBufferPointer(r))
            if baseline {
              baselineAccumulator.add(reference: UnsafeBufferPointer(v), reconstruction: UnsafeBufferPointer(b))
            }
          }
        }
      }
    }
    return (accumulator, baseline ? baselineAccumulator : nil)
  }

  /// `forEachRow` on every core, with the same results: `body` is called for each row
  /// with its values as Float32 and buffers for the row's reconstruction and (with
  /// `baseline`) an alternative's, rows in parallel over blocks of 16; each row's error
  /// statistics are computed apart and added in row order afterwards, which are exactly
  /// `forEachRow`'s sums. `body` must write only what belongs to its row. A row holding a
  /// non-finite weight is not passed to `body`, and the first such weight in row order is
  /// rejected with `forEachRow`'s message. The mapped input pages are dropped as the
  /// blocks are done (`RowRelease`).
  static func forEachRowInParallel(
    _ input: TensorInput, rows: Int, columns: Int, baseline: Bool = false,
    _ body: (Int, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) ->
      Void
  ) throws(SwiftCompressError) -> (error: ErrorAccumulator, baseline: ErrorAccumulator?) {
    let blockRows = 16
    let blocks = (rows + blockRows - 1) / blockRows
    let rowBytes = columns * input.descriptor.dtype.bitsPerElement / 8
    var stats = [sck_error_stats](repeating: sck_error_stats(), count: rows * (baseline ? 2 : 1))
    var nonFinite = [Bool](repeating: false, count: blocks)
    let release = RowRelease(input, rows: rows, rowBytes: rowBytes, blockRows: blockRows)
    stats.withUnsafeMutableBufferPointer { statsOut in
      nonFinite.withUnsafeMutableBufferPointer { flagOut in
        nonisolated(unsafe) let (statsOut, flagOut) = (statsOut, flagOut)
        Parallel.perform(iterations: blocks) { block in
          let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
          let reconstruction = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
          let alternative = UnsafeMutableBufferPointer<Float>.allocate(capacity: baseline ? columns : 0)
          defer {
            scratch.deallocate()
            reconstruction.deallocate()
            alternative.deallocate()
          }
          let range = (block * blockRows)..<min(rows, (block + 1) * blockRows)
          for row in range {
            let values = input.float32Row(row, columns: columns, scratch: scratch)
            guard values.allSatisfy(\.isFinite) else {
              flagOut[block] = true
              continue
            }
            body(row, values, reconstruction, alternative)
            sck_error_stats_f32(values.baseAddress, reconstruction.baseAddress, columns, &statsOut[row])
            if baseline {
              sck_error_stats_f32(values.baseAddress, alternative.baseAddress, columns, &statsOut[rows + row])
            }
          }
          release.done(range)
        }
      }
    }
    if nonFinite.contains(true) { try checkFinite(input, rows: rows, columns: columns) }
    var error = ErrorAccumulator()
    var alternativeError = ErrorAccumulator()
    for row in 0..<rows where columns > 0 {
      error.add(stats[row])
      if baseline { alternativeError.add(stats[rows + row]) }
    }
    return (error, baseline ? alternativeError : nil)
  }

  /// The dtype code the C kernels take: 0 Float32, 1 BFloat16, 2 Float16.
  static func kernelDType(_ dtype: DType) -> Int32 {
    dtype == .bf16 ? 1 : dtype == .f16 ? 2 : 0
  }

  /// Calls `body` for every row, in parallel over fixed blocks of 64 rows, with the row's
  /// Float32 values and a buffer for its reconstruction, and returns the error summed
  /// in block order (so independent of the thread count). `body` must write only what
  /// belongs to its row. Aligned Float32 rows are passed straight from the mapping; other
  /// dtypes are converted into a buffer per block. Kernels are safe on NaN and infinite
  /// input (their clamps map them to finite codes), so non-finite weights are found in
  /// the error sums; callers then reject them with `rejectNonFinite`. The mapped input
  /// pages are dropped from the resident set as the blocks are done (`RowRelease`; read
  /// again from the file if touched later).
  static func parallelRows(
    _ input: TensorInput, rows: Int, columns: Int, measure: Bool = true,
    _ body: @Sendable (Int, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void
  ) -> ErrorAccumulator {
    let direct = input.rowsReadInPlace
    let blockRows = 64
    let blocks = (rows + blockRows - 1) / blockRows
    let release = RowRelease(
      input, rows: rows, rowBytes: columns * input.descriptor.dtype.bitsPerElement / 8, blockRows: blockRows)
    var accumulators = [ErrorAccumulator](repeating: ErrorAccumulator(), count: blocks)
    accumulators.withUnsafeMutableBufferPointer { errorOut in
      nonisolated(unsafe) let errorOut = errorOut
      Parallel.perform(iterations: blocks) { block in
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: direct ? 0 : columns)
        let reconstruction = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
        defer {
          values.deallocate()
          reconstruction.deallocate()
        }
        var accumulator = ErrorAccumulator()
        let range = (block * blockRows)..<min(rows, (block + 1) * blockRows)
        for row in range {
          let rowValues = input.float32Row(row, columns: columns, scratch: values)
          body(row, rowValues, reconstruction)
          if measure { accumulator.add(reference: rowValues, reconstruction: UnsafeBufferPointer(reconstruction)) }
        }
        release.done(range)
        errorOut[block] = accumulator
      }
    }
    var error = ErrorAccumulator()
    for accumulator in accumulators { error.merge(accumulator) }
    return error
  }

  /// Calls `body` for fixed blocks of 64 rows in parallel, with room for each row's error
  /// statistics, and returns them summed row by row in row order: the same sums as
  /// `parallelRows` measuring the same reconstructions, whatever the thread count. For
  /// kernels that quantize and measure whole rows of `input` (`rowBytes` each) in one
  /// pass; its mapped pages are dropped as the blocks are done (`RowRelease`).
  static func parallelRowBlocks(
    _ input: TensorInput, rows: Int, rowBytes: Int,
    _ body: @Sendable (Range<Int>, UnsafeMutablePointer<sck_error_stats>) -> Void
  ) -> ErrorAccumulator {
    let blockRows = 64
    let blocks = (rows + blockRows - 1) / blockRows
    let release = RowRelease(input, rows: rows, rowBytes: rowBytes, blockRows: blockRows)
    var accumulators = [ErrorAccumulator](repeating: ErrorAccumulator(), count: blocks)
    accumulators.withUnsafeMutableBufferPointer { errorOut in
      nonisolated(unsafe) let errorOut = errorOut
      Parallel.perform(iterations: blocks) { block in
        let range = (block * blockRows)..<min(rows, (block + 1) * blockRows)
        let stats = UnsafeMutablePointer<sck_error_stats>.allocate(capacity: range.count)
        defer { stats.deallocate() }
        body(range, stats)
        release.done(range)
        var accumulator = ErrorAccumulator()
        for i in 0..<range.count { accumulator.add(stats[i]) }
        errorOut[block] = accumulator
      }
    }
    var error = ErrorAccumulator()
    for accumulator in accumulators { error.merge(accumulator) }
    return error
  }

  /// An array of `count` elements left uninitialised, for outputs a kernel fills entirely
  /// (zero-filling them first costs a pass over memory). The whole 2 MiB pages of a large
  /// one are marked for transparent huge pages (`MADV_HUGEPAGE`; Linux gives them only
  /// where asked): pages the process has not touched yet then come 512 to a fault.
  static func uninitialized<T: BitwiseCopyable>(_ count: Int) -> [T] {
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
      initialized = count
      #if os(Linux)
        let huge = 2 << 20
        guard count * MemoryLayout<T>.stride >= 2 * huge, let base = buffer.baseAddress else { return }
        let start = (Int(bitPattern: base) + huge - 1) / huge * huge
        let end = (Int(bitPattern: base) + count * MemoryLayout<T>.stride) / huge * huge
        if end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) {
          _ = madvise(pointer, end - start, MADV_HUGEPAGE)
        }
      #endif
    }
  }

  /// Throws when `error` (from `parallelRows`) met non-finite weights, naming the first.
  static func rejectNonFinite(
    _ error: ErrorAccumulator, _ input: TensorInput, rows: Int, columns: Int, purpose: String = "quantization"
  ) throws(SwiftCompressError) {
    if error.nonFinite > 0 { try checkFinite(input, rows: rows, columns: columns, purpose: purpose) }
  }

  /// max |w| over the finite weights of `input`, in parallel over chunks.
  static func absMax(_ input: TensorInput) -> Float {
    let count = input.elementCount
    let dtype = input.descriptor.dtype
    let chunks = (count + chunkElementCount - 1) / chunkElementCount
    let direct = dtype == .f32 && Int(bitPattern: input.bytes.baseAddress) % MemoryLayout<Float>.alignment == 0
    var maxima = [Float](repeating: 0, count: chunks)
    maxima.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: chunks) { chunk in
        let start = chunk * chunkElementCount
        let n = min(chunkElementCount, count - start)
        var nonfinite: UInt64 = 0
        if direct, let base = input.bytes.baseAddress {
          out[chunk] = sck_absmax_f32(base.assumingMemoryBound(to: Float.self) + start, n, &nonfinite)
          return
        }
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { scratch.deallocate() }
        let bits = dtype.bitsPerElement
        Float32Conversion.convert(
          UnsafeRawBufferPointer(rebasing: input.bytes[(start * bits / 8)..<((start + n) * bits / 8)]), dtype: dtype,
          count: n, into: scratch)
        out[chunk] = sck_absmax_f32(scratch.baseAddress, n, &nonfinite)
      }
    }
    return maxima.max() ?? 0
  }

  /// Rejects NaN and infinite weights, naming the first one.
  static func checkFinite(_ input: TensorInput, rows: Int, columns: Int, purpose: String = "quantization")
    throws(SwiftCompressError)
  {
    var first: Int?
    forEachChunk(of: input, count: rows * columns) { start, chunk in
      guard first == nil, let base = chunk.baseAddress else { return }
      var stats = sck_stats()
      sck_stats_f32(base, chunk.count, &stats)
      if stats.nans + stats.infs > 0 { first = start + (chunk.firstIndex { !$0.isFinite } ?? 0) }
    }
    if let first {
      let value = Float32Conversion.floats(
        UnsafeRawBufferPointer(
          rebasing: input.bytes[(first * input.descriptor.dtype.bitsPerElement / 8)...]), dtype: input.descriptor.dtype,
        count: 1)[0]
      throw .invalidTensor(
        name: input.descriptor.name,
        reason:
          "element [\(first / columns), \(first % columns)] is \(value); \(purpose) needs finite weights\(nonFiniteAdvice)"
      )
    }
  }

  /// Squared error of a candidate encoding of `values[range]`, `decode` giving each
  /// element's reconstruction.
  @inline(__always)
  static func squaredError(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, _ decode: (Int) -> Float)
    -> Double
  {
    var sum = 0.0
    for i in range {
      let d = Double(values[i]) - Double(decode(i))
      sum += d * d
    }
    return sum
  }
}

extension ScaleSearch {
  /// Clipping factors tried by the MSE search for integer and FP8 scales: 1 (the
  /// reference's scale) down to 0.5 in steps of 0.02. The first, 1, wins ties.
  static let clippingFactors: [Float] = (0...25).map { 1 - Float($0) * 0.02 }
}
