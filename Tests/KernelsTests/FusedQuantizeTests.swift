import CKernels
import TestSupport
import Testing

/// Rows of weights for the one-pass quantizers: heavy-tailed values with outlier columns,
/// an all-zero group, values on exact rounding ties of their group's scale, and BF16-exact
/// values when `bfloat16` (stored as the raw 16-bit patterns in `raw16`).
struct QuantizeRows {
  let rows: Int
  let columns: Int
  var values: [Float]
  var raw16: [UInt16]

  init(rows: Int, columns: Int, seed: UInt64, bfloat16: Bool, specials: Bool = false) {
    self.rows = rows
    self.columns = columns
    var rng = SplitMix64(seed: seed)
    var values = (0..<(rows * columns)).map { i -> Float in
      let u = Double(rng.next() >> 11) / Double(1 << 53)
      let t = (u - 0.5) / max(1e-3, (u * (1 - u)).squareRoot())  // heavy tails
      return Float(t * 0.02) * (i % columns % 61 == 7 ? 8 : 1)
    }
    for i in 0..<min(32, columns) { values[i] = 0 }  // a zero group in row 0
    if rows > 1 {  // row 1: multiples of max / 15 (ties of the 4-bit grid) and of max / 255
      for i in 0..<columns { values[columns + i] = Float(i % 31 - 15) * 0.5 * (i % 2 == 0 ? 1 : 1.0 / 17) }
    }
    if specials && rows > 2 {
      values[2 * columns + 5] = .nan
      values[2 * columns + 40] = .infinity
    }
    raw16 = values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
    if bfloat16 { values = raw16.map { Float(bitPattern: UInt32($0) << 16) } }
    self.values = values
  }
}

struct FusedResult: Equatable {
  var packed: [UInt8]
  var scales: [UInt32]
  var stats: [[UInt64]]
}

func statsBits(_ s: sck_error_stats) -> [UInt64] {
  [
    s.ref_sq.bitPattern, s.out_sq.bitPattern, s.err_sq.bitPattern, s.dot.bitPattern,
    UInt64(s.max_abs_err.bitPattern), s.nonfinite,
  ]
}

@Suite("One-pass quantization kernels", .serialized)
struct FusedQuantizeTests {
  func integerRows(_ rows: QuantizeRows, bits: Int, group: Int, dtype: Int32) -> FusedResult {
    var packed = [UInt8](repeating: 0xAA, count: rows.rows * rows.columns * bits / 8)
    var scales = [Float](repeating: 0, count: rows.rows * rows.columns / group)
    var stats = [sck_error_stats](repeating: sck_error_stats(), count: rows.rows)
    let status: Int32 =
      dtype == 1
      ? rows.raw16.withUnsafeBytes {
        sck_quantize_int_rows(
          $0.baseAddress, rows.rows, rows.columns, group, Int32(bits), 1, 0.0078125, &packed, &scales, &stats)
      }
      : rows.values.withUnsafeBytes {
        sck_quantize_int_rows(
          $0.baseAddress, rows.rows, rows.columns, group, Int32(bits), 0, 1.1920929e-07, &packed, &scales, &stats)
      }
    #expect(status == 0)
    return FusedResult(packed: packed, scales: scales.map(\.bitPattern), stats: stats.map(statsBits))
  }

  /// The step-by-step reference: each row widened, sck_quantize_int_groups, then the error
  /// sums of sck_error_stats_f32 (both on the dispatched path).
  func integerStepwise(_ rows: QuantizeRows, bits: Int, group: Int, dtype: Int32) -> FusedResult {
    let (r, c) = (rows.rows, rows.columns)
    var packed = [UInt8](repeating: 0, count: r * c * bits / 8)
    var scales = [Float](repeating: 0, count: r * c / group)
    var stats: [[UInt64]] = []
    var codes = [UInt8](repeating: 0, count: c)
    var recon = [Float](repeating: 0, count: c)
    let epsilon: Float = dtype == 1 ? 0.0078125 : 1.1920929e-07
    for row in 0..<r {
      let values = Array(rows.values[(row * c)..<((row + 1) * c)])
      packed.withUnsafeMutableBytes { out in
        let words = (out.baseAddress! + row * c * bits / 8)
        scales.withUnsafeMutableBufferPointer { s in
          codes.withUnsafeMutableBufferPointer { scratch in
            sck_quantize_int_groups(
              values, c / group, group, Int32(bits), 1, dtype, epsilon,
              bits == 8 ? words.assumingMemoryBound(to: UInt8.self) : scratch.baseAddress,
              words.assumingMemoryBound(to: UInt32.self), s.baseAddress! + row * (c / group), nil, &recon)
          }
        }
      }
      var s = sck_error_stats()
      sck_error_stats_f32(values, recon, c, &s)
      stats.append(statsBits(s))
    }
    return FusedResult(packed: packed, scales: scales.map(\.bitPattern), stats: stats)
  }

  @Test(arguments: [4, 8], [Int32(0), 1])
  func integerRowsEqualTheStepwiseKernelsOnBothPaths(bits: Int, dtype: Int32) {
    for (columns, group) in [(256, 32), (512, 128), (384, 384), (96, 32), (64, 16)] {
      let rows = QuantizeRows(rows: 5, columns: columns, seed: UInt64(columns + bits), bfloat16: dtype == 1)
      let (portable, dispatched) = bothPaths { integerRows(rows, bits: bits, group: group, dtype: dtype) }
      let reference = integerStepwise(rows, bits: bits, group: group, dtype: dtype)
      #expect(portable == reference, "portable, \(bits) bits, dtype \(dtype), group \(group)")
      #expect(dispatched == reference, "dispatched, \(bits) bits, dtype \(dtype), group \(group)")
      #expect(reference.stats.allSatisfy { $0[5] == 0 })  // every weight finite
    }
  }

  @Test(arguments: [Int32(0), 1])
  func integerRowsCountNonFiniteWeightsOnBothPaths(dtype: Int32) {
    let rows = QuantizeRows(rows: 4, columns: 256, seed: 3, bfloat16: dtype == 1, specials: true)
    let (portable, dispatched) = bothPaths { integerRows(rows, bits: 4, group: 128, dtype: dtype) }
    #expect(portable == dispatched)
    #expect(dispatched.stats[2][5] > 0)
    #expect(dispatched.stats[3][5] == 0)
  }

  @Test func integerRowsRefuseOtherWidthsAndDtypes() {
    var packed = [UInt8](repeating: 0, count: 64)
    var scales = [Float](repeating: 0, count: 4)
    var stats = [sck_error_stats](repeating: sck_error_stats(), count: 1)
    let values = [Float](repeating: 1, count: 64)
    #expect(sck_quantize_int_rows(values, 1, 64, 32, 3, 0, 1e-7, &packed, &scales, &stats) == -1)
    #expect(sck_quantize_int_rows(values, 1, 64, 32, 4, 2, 1e-7, &packed, &scales, &stats) == -1)
    #expect(sck_quantize_int_rows(values, 1, 64, 48, 4, 0, 1e-7, &packed, &scales, &stats) == -1)
  }

  func mxfp4Rows(_ rows: QuantizeRows, dtype: Int32) -> FusedResult {
    var packed = [UInt8](repeating: 0xAA, count: rows.rows * rows.columns / 2)
    var exponents = [UInt8](repeating: 0, count: rows.rows * rows.columns / 32)
    var stats = [sck_error_stats](repeating: sck_error_stats(), count: rows.rows)
    let status: Int32 =
      dtype == 1
      ? rows.raw16.withUnsafeBytes {
        sck_quantize_mxfp4_rows($0.baseAddress, rows.rows, rows.columns, 1, &exponents, &packed, &stats)
      }
      : rows.values.withUnsafeBytes {
        sck_quantize_mxfp4_rows($0.baseAddress, rows.rows, rows.columns, 0, &exponents, &packed, &stats)
      }
    #expect(status == 0)
    return FusedResult(packed: packed + exponents, scales: [], stats: stats.map(statsBits))
  }

  /// The step-by-step reference: each row widened, sck_quantize_mxfp4, then
  /// sck_error_stats_f32 (both on the dispatched path).
  func mxfp4Stepwise(_ rows: QuantizeRows, dtype: Int32) -> FusedResult {
    let (r, c) = (rows.rows, rows.columns)
    var packed = [UInt8](repeating: 0, count: r * c / 2)
    var exponents = [UInt8](repeating: 0, count: r * c / 32)
    var stats: [[UInt64]] = []
    var recon = [Float](repeating: 0, count: c)
    for row in 0..<r {
      let values = Array(rows.values[(row * c)..<((row + 1) * c)])
      packed.withUnsafeMutableBufferPointer { p in
        exponents.withUnsafeMutableBufferPointer { e in
          sck_quantize_mxfp4(values, c / 32, dtype, e.baseAddress! + row * c / 32, p.baseAddress! + row * c / 2, &recon)
        }
      }
      var s = sck_error_stats()
      sck_error_stats_f32(values, recon, c, &s)
      stats.append(statsBits(s))
    }
    return FusedResult(packed: packed + exponents, scales: [], stats: stats)
  }

  @Test(arguments: [Int32(0), 1])
  func mxfp4RowsEqualTheStepwiseKernelsOnBothPaths(dtype: Int32) {
    for columns in [32, 96, 512] {
      var rows = QuantizeRows(rows: 6, columns: columns, seed: UInt64(columns), bfloat16: dtype == 1)
      // Exact E2M1 ties and subnormal weights (scales down to 2^-127).
      for i in 0..<columns {
        rows.values[2 * columns + i] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, -0.25, -5, 0, -0.0][i % 12] * 0.125
        rows.values[3 * columns + i] = Float(bitPattern: UInt32(i * 977 % 0x7FFFFF)) * (i % 2 == 0 ? 1 : -1)
      }
      rows.raw16 = rows.values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
      if dtype == 1 { rows.values = rows.raw16.map { Float(bitPattern: UInt32($0) << 16) } }
      let (portable, dispatched) = bothPaths { mxfp4Rows(rows, dtype: dtype) }
      let reference = mxfp4Stepwise(rows, dtype: dtype)
      #expect(portable == reference, "portable, dtype \(dtype), \(columns) columns")
      #expect(dispatched == reference, "dispatched, dtype \(dtype), \(columns) columns")
    }
    let specials = QuantizeRows(rows: 4, columns: 64, seed: 9, bfloat16: dtype == 1, specials: true)
    let (portable, dispatched) = bothPaths { mxfp4Rows(specials, dtype: dtype) }
    #expect(portable == dispatched)
    #expect(dispatched.stats[2][5] > 0)
  }
}
