import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

/// The `QuantizationGrid` contract, for every codec `quantize` writes: the grid is the one
/// round-to-nearest (`encode(_:context:)`) quantizes on, rounding to it is the codec's
/// encode and decode, and values on it are written with the original weight's scales and
/// read back exactly. Every comparison is exact (bytes, or Float32 bit patterns).
@Suite("Quantization grids for calibrated values")
struct QuantizationGridTests {
  struct GridCase: Sendable, CustomTestStringConvertible {
    let name: String
    let codec: any QuantizationCodec
    let dtype: DType
    let search: ScaleSearch

    var testDescription: String { "\(name) \(dtype) scale search \(search)" }

    /// Shapes with several groups and rows: FP8_BLOCK's 130 x 320 has ragged 128 x 128
    /// blocks in both directions; the others have 12 rows of 3 to 20 groups.
    var shape: [Int] {
      if let fp8 = codec as? Float8Codec, fp8.blockStructure != nil { return [130, 320] }
      return codec is IntegerPackCodec ? [12, 384] : [12, 320]
    }
  }

  /// Every preset (the integer ones in groups of 128 and per output channel), plus
  /// integer widths and zero points no preset uses, in each weight dtype and scale search.
  static let cases: [GridCase] = {
    var codecs: [(String, any QuantizationCodec)] = QuantizationScheme.allCases.flatMap {
      scheme -> [(String, any QuantizationCodec)] in
      scheme.fixedGrouping != nil
        ? [(scheme.rawValue, scheme.codec(groupSize: 0))]
        : [
          (scheme.rawValue, scheme.codec(groupSize: 128)),
          ("\(scheme.rawValue) per channel", scheme.codec(groupSize: 0)),
        ]
    }
    codecs += [
      ("int7 group 64", IntegerPackCodec(bits: 7, symmetric: true, groupSize: 64)),
      ("int2 asymmetric group 64", IntegerPackCodec(bits: 2, symmetric: false, groupSize: 64)),
      ("int8 asymmetric per channel", IntegerPackCodec(bits: 8, symmetric: false, groupSize: 0)),
    ]
    return codecs.flatMap { name, codec in
      [DType.f32, .bf16, .f16].flatMap { dtype in
        ScaleSearch.allCases.map { GridCase(name: name, codec: codec, dtype: dtype, search: $0) }
      }
    }
  }()

  /// A seeded weight (SplitMix64, seed 20_251_202) in `dtype`, as the codec reads it:
  /// Gaussian rows of standard deviation 0.0025 to 0.16, one row of 1e-5 (tiny scales,
  /// F16 subnormals), an outlier every 37 values, and zeros: row 0's first 128 values
  /// (an all-zero group, or several) and the last two rows (all-zero rows, and for
  /// FP8_BLOCK an all-zero row of blocks).
  static func weight(rows: Int, columns: Int, dtype: DType) -> [Float] {
    var random = SplitMix64(seed: 20_251_202)
    var values = [Float](repeating: 0, count: rows * columns)
    for r in 0..<(rows - 2) {
      let deviation: Float = r == 2 ? 1e-5 : 0.02 * Float(sign: .plus, exponent: r % 7 - 3, significand: 1)
      for c in 0..<columns where !(r == 0 && c < 128) {
        values[r * columns + c] = random.gaussian() * deviation * ((r * columns + c) % 37 == 0 ? 8 : 1)
      }
    }
    // As stored in `dtype` (rounded to nearest even), read back.
    return DenseCodec.encode(values, as: dtype).withUnsafeBytes {
      Float32Conversion.floats($0, dtype: dtype, count: values.count)
    }
  }

  /// Runs `body` with the weight `values` stored in `dtype` as a codec's input.
  static func withInput<T>(
    _ values: [Float], shape: [Int], dtype: DType, _ body: (TensorInput) throws -> T
  ) rethrows -> T {
    let bytes = DenseCodec.encode(values, as: dtype)
    return try bytes.withUnsafeBytes {
      try body(TensorInput(descriptor: PlannedTensor(name: "m.weight", dtype: dtype, shape: shape), bytes: $0))
    }
  }

  /// The outputs' bytes (encoders return owned bytes).
  static func bytes(_ result: TransformResult) -> [[UInt8]] {
    result.outputs.map {
      guard case .owned(let bytes) = $0 else {
        Issue.record("an encoder returned bytes it does not own")
        return []
      }
      return bytes
    }
  }

  /// `values` (row-major) with every column rounded by `grid`.
  static func roundColumns(_ values: [Float], grid: any QuantizationGrid) -> [Float] {
    var result = values
    var column = [Float](repeating: 0, count: grid.rows)
    for c in 0..<grid.columns {
      for r in 0..<grid.rows { column[r] = values[r * grid.columns + c] }
      column.withUnsafeMutableBufferPointer { grid.round(column: c, values: $0) }
      for r in 0..<grid.rows { result[r * grid.columns + c] = column[r] }
    }
    return result
  }

  /// Whether the codec's arithmetic takes some codes' own values to another code: 8-bit
  /// integer codes computed in BF16.
  static func movesItsOwnValues(_ test: GridCase) -> Bool {
    (test.codec as? IntegerPackCodec)?.bits == 8 && test.dtype == .bf16
  }

  /// The indices where `a` and `b` differ bit for bit.
  static func differences(_ a: [Float], _ b: [Float]) -> [Int] {
    guard a.count == b.count else { return [-1] }
    return a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
  }

  @Test(arguments: cases)
  func theGridIsRoundToNearestsAndHoldsWhatItRounds(_ test: GridCase) throws {
    let (codec, shape) = (test.codec, test.shape)
    let (rows, columns) = (shape[0], shape[1])
    let context = QuantizationContext(scaleSearch: test.search)
    let weight = Self.weight(rows: rows, columns: columns, dtype: test.dtype)
    let planned = try codec.layout(
      of: PlannedTensor(name: "m.weight", dtype: test.dtype, shape: shape), module: "m"
    ).outputs
    func decode(_ data: [[UInt8]]) throws -> [Float] {
      try codec.decode(outputs: planned, data: data, shape: shape)
    }
    let (reference, grid) = try Self.withInput(weight, shape: shape, dtype: test.dtype) {
      (Self.bytes(try codec.encode($0, context: context)), try codec.grid(for: $0, context: context))
    }
    #expect(grid.rows == rows && grid.columns == columns)

    // (a) The original weight written through the grid: the codec's bytes exactly. One
    // exception: 8-bit codes in BF16, whose arithmetic takes some codes' own values to a
    // neighbouring code (r(q x s) / s is off by up to |q| x 2^-8). The grid stores such a
    // value as the code it is the value of, so a weight lying exactly there is stored
    // differently, and read back exactly, where round-to-nearest's is not.
    let written = Self.bytes(try grid.encode(values: weight))
    #expect(written.count == planned.count)
    for (i, output) in planned.enumerated() where i < written.count {
      #expect(written[i].count == output.byteCount, "\(output.name) is not the planned size")
      if i > 0 || !Self.movesItsOwnValues(test) {
        #expect(written[i] == reference[i], "\(output.name) differs from encode's")
      }
    }
    if Self.movesItsOwnValues(test) {
      let (ours, theirs) = (try decode(written), try decode(reference))
      let stored = Self.differences(ours, theirs)
      #expect(stored.allSatisfy { ours[$0].bitPattern == weight[$0].bitPattern && theirs[$0] != weight[$0] })
    }

    // (b) Rounding every column: what round-to-nearest decodes to, bit for bit.
    let rounded = Self.roundColumns(weight, grid: grid)
    let roundToNearest = try decode(reference)
    let wrong = Self.differences(rounded, roundToNearest)
    #expect(
      wrong.count == 0,
      "\(wrong.count) rounded values differ, e.g. [\(wrong.first.map { "\($0 / columns), \($0 % columns)" } ?? "")]: \(wrong.first.map { "\(rounded[$0]) vs \(roundToNearest[$0])" } ?? "")"
    )

    // (c) Values moved by error feedback (seeded noise, seed 7, half a row's spread, and
    // some far outside the grid), rounded, with every 11th set to an exact zero as
    // SparseGPT prunes: written with the original weight's scales, read back exactly.
    var random = SplitMix64(seed: 7)
    var moved = weight
    for i in moved.indices {
      let spread = max(abs(weight[i]), 1e-3)
      moved[i] += random.gaussian() * spread * (i % 53 == 0 ? 20 : 0.5)
    }
    var calibrated = Self.roundColumns(moved, grid: grid)
    for i in stride(from: 0, to: calibrated.count, by: 11) { calibrated[i] = 0 }
    let calibratedOutputs = Self.bytes(try grid.encode(values: calibrated))
    let readBack = try decode(calibratedOutputs)
    let lost = Self.differences(readBack, calibrated)
    #expect(
      lost.count == 0,
      "\(lost.count) calibrated values do not survive encode and decode, e.g. \(lost.first.map { "[\($0 / columns), \($0 % columns)] \(calibrated[$0]) read back as \(readBack[$0])" } ?? "")"
    )
    #expect(Array(calibratedOutputs.dropFirst()) == Array(reference.dropFirst()), "scales are not encode's")
    // Rounding again leaves them where they are (but for the values 8-bit BF16 moves).
    let again = Self.roundColumns(calibrated, grid: grid)
    let moves = Self.differences(again, calibrated)
    #expect(
      moves.count == 0 || Self.movesItsOwnValues(test),
      "\(moves.count) rounded values move when rounded again, e.g. \(moves.first.map { "[\($0 / columns), \($0 % columns)] \(calibrated[$0]) to \(again[$0])" } ?? "")"
    )

    // (d) Zeros are on the grid: a zero rounds to +0 in every row and column.
    var zeros = [Float](repeating: 0, count: rows)
    for c in [0, columns / 2, columns - 1] {
      zeros.withUnsafeMutableBufferPointer { grid.round(column: c, values: $0) }
      #expect(zeros.allSatisfy { $0.bitPattern == 0 }, "column \(c): \(zeros)")
    }
  }

  @Test func calibratedValuesMustBeFiniteAndFillTheWeight() throws {
    let codec = IntegerPackCodec(bits: 4, symmetric: true, groupSize: 32)
    let weight = Self.weight(rows: 4, columns: 64, dtype: .f32)
    let grid = try Self.withInput(weight, shape: [4, 64], dtype: .f32) {
      try codec.grid(for: $0, context: QuantizationContext())
    }
    var values = weight
    values[70] = .nan
    #expect(
      throws: SwiftCompressError.invalidTensor(
        name: "m.weight", reason: "calibrated element [1, 6] is nan; quantization needs finite values")
    ) { try grid.encode(values: values) }
    #expect(throws: SwiftCompressError.self) { try grid.encode(values: Array(weight.dropLast())) }
  }

  @Test func nvfp4TakesTheSharedGlobalScaleFromTheContext() throws {
    let codec = NVFP4Codec()
    let weight = Self.weight(rows: 12, columns: 64, dtype: .bf16)
    let context = QuantizationContext(globalScale: 1234.5)
    let (reference, written) = try Self.withInput(weight, shape: [12, 64], dtype: .bf16) {
      (
        Self.bytes(try codec.encode($0, context: context)),
        Self.bytes(try codec.grid(for: $0, context: context).encode(values: weight))
      )
    }
    #expect(written == reference)
    #expect(written[2] == [Float(1234.5)].withUnsafeBytes { Array($0) })
  }
}
