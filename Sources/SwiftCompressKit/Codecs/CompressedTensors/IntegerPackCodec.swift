import CKernels
import CheckpointIO
import Foundation

/// compressed-tensors' `pack-quantized` layout: 2- to 8-bit integer codes in groups of `g`
/// consecutive inputs, packed into int32 words. For a weight W [out, in]:
/// - `<weight>_packed` I32 [out, in * bits / 32]: q + 2^(bits-1), each row one
///   little-endian bit stream (code j at bits j * bits ..< (j + 1) * bits), so a 3-, 5- or
///   6-bit code may straddle two words;
/// - `<weight>_scale` [out, in / g] in W's dtype;
/// - `<weight>_zero_point` I32 [out * bits / 32, in / g] (asymmetric only), packed the
///   same way along the output dimension;
/// - `<weight>_shape` I64 [2] = [out, in].
///
/// The arithmetic follows the reference step by step in W's dtype (each operation done
/// in Float32 and rounded to BF16 or F16 when W is), which is what makes the bytes equal:
/// symmetric s = amax / ((qmax - qmin) / 2); asymmetric s = (max - min) / (qmax - qmin)
/// and zp = round(clamp(qmin - min / s)); q = round-half-even(clamp(W / s (+ zp))).
/// A scale of exactly zero (an all-zero group) becomes the dtype's epsilon, as in the
/// reference. Decoding is (q - zp) x s in the scale's dtype.
public struct IntegerPackCodec: QuantizationCodec {
  public let bits: Int
  public let symmetric: Bool
  /// Inputs per group; 0 for one scale per output channel (the `channel` strategy).
  public let groupSize: Int

  public init(bits: Int, symmetric: Bool, groupSize: Int) {
    self.bits = bits
    self.symmetric = symmetric
    self.groupSize = groupSize
  }

  public var format: String { "pack-quantized" }
  public var layoutName: String { "pack-quantized int\(bits)" }

  /// Codes per 32-bit word of the asymmetric zero points (4 bits only).
  var perWord: Int { 32 / bits }

  /// What group sizes must be a multiple of, so that every group fills whole words.
  public static func groupMultiple(bits: Int) -> Int {
    var (a, b) = (32, bits)
    while b != 0 { (a, b) = (b, a % b) }
    return 32 / a
  }

  public static let readableFormat = "pack-quantized (2 to 8 bits; with zero points 2, 4 or 8)"

  public static func described(format: String, weights: JSONValue?) -> IntegerPackCodec? {
    let bits = weights?["num_bits"]?.uint64Value.map(Int.init) ?? 0
    let symmetric = weights?["symmetric"] != .bool(false)
    // Zero points are read as whole codes per word, which only widths dividing 32 have.
    guard format == "pack-quantized", (2...8).contains(bits), symmetric || 32 % bits == 0 else { return nil }
    let strategy = weights?["strategy"]?.stringValue
    return IntegerPackCodec(
      bits: bits, symmetric: symmetric,
      groupSize: strategy == "channel" ? 0 : weights?["group_size"]?.uint64Value.map(Int.init) ?? 0)
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let group = groupSize == 0 ? columns : groupSize
    let multiple = Self.groupMultiple(bits: bits)
    guard columns % group == 0, columns % multiple == 0 else {
      let need =
        columns % group != 0
        ? "group size \(group) does not divide it"
        : "\(bits)-bit codes fill whole 32-bit words only \(multiple) at a time"
      let fix =
        weight.name.hasSuffix(".weight_a")
        ? "choose a factorize rank that is a multiple of \(max(group == columns ? multiple : group, multiple))"
        : "choose a group size that divides \(columns)"
      throw .invalidTensor(
        name: weight.name, reason: "its rows have \(columns) values and \(need); \(fix), or --ignore \(module)")
    }
    var outputs = [
      PlannedTensor(name: weight.name + "_packed", dtype: .i32, shape: [rows, columns * bits / 32]),
      PlannedTensor(name: weight.name + "_scale", dtype: weight.dtype, shape: [rows, columns / group]),
    ]
    if !symmetric {
      outputs.append(
        PlannedTensor(
          name: weight.name + "_zero_point", dtype: .i32, shape: [(rows * bits + 31) / 32, columns / group]))
    }
    outputs.append(PlannedTensor(name: weight.name + "_shape", dtype: .i64, shape: [2]))
    return (outputs, groupSize == 0 ? "per channel" : "group \(group)")
  }

  public var weightArguments: [JSONMember] {
    [
      JSONMember("dynamic", .bool(false)),
      JSONMember("group_size", groupSize == 0 ? .null : .number(String(groupSize))),
      JSONMember("num_bits", .number(String(bits))),
      JSONMember("strategy", .string(groupSize == 0 ? "channel" : "group")),
      JSONMember("symmetric", .bool(symmetric)),
      JSONMember("type", .string("int")),
    ]
  }

  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let dtype = input.descriptor.dtype
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let group = groupSize == 0 ? columns : groupSize
    let groups = columns / group
    let qmin = Float(-(1 << (bits - 1)))
    let qmax = Float((1 << (bits - 1)) - 1)
    let round = DTypeRounding(dtype)
    let symmetric = symmetric
    let bits = bits
    let words = columns * bits / 32
    let searching = context.scaleSearch == .mse
    // Every element of these is written below (the kernel or the search loop).
    var packed = searching ? [UInt8](repeating: 0, count: rows * words * 4) : RowLoops.uninitialized(rows * words * 4)
    var scales: [Float] = RowLoops.uninitialized(rows * groups)
    var zeroPoints: [Float] = RowLoops.uninitialized(symmetric ? 0 : rows * groups)
    let offset = Float(1 << (bits - 1))

    // The scale and zero point of a group for clipping factor `alpha` (1: the reference's).
    func parameters(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, alpha: Float) -> (Float, Float) {
      if symmetric {
        var amax: Float = 0
        for i in range { amax = max(amax, abs(values[i])) }
        let scale = round(alpha * amax / ((qmax - qmin) / 2))
        return (scale == 0 ? round.epsilon : scale, 0)
      }
      var low: Float = 0
      var high: Float = 0
      for i in range {
        low = min(low, values[i])
        high = max(high, values[i])
      }
      (low, high) = (alpha * low, alpha * high)
      let scale = round(round(high - low) / (qmax - qmin))
      if scale == 0 { return (round.epsilon, 0) }  // an all-zero group: every code is the zero point
      return (scale, (min(max(round(qmin - round(low / scale)), qmin), qmax)).rounded(.toNearestOrEven))
    }
    let rule = IntegerCodeRule(bits: bits, symmetric: symmetric, dtype: dtype)
    @inline(__always) func code(_ value: Float, _ scale: Float, _ zeroPoint: Float) -> Float {
      rule.code(value, scale: scale, zeroPoint: zeroPoint)
    }

    if !searching, symmetric, bits == 4 || bits == 8, dtype == .f32 || dtype == .bf16,
      let base = input.bytes.baseAddress
    {
      nonisolated(unsafe) let source = base
      // Round-to-nearest from the stored rows in one pass (widening, scales, codes,
      // packing and error sums), blocks of rows in parallel.
      let dtypeCode = RowLoops.kernelDType(dtype)
      let epsilon = round.epsilon
      let rowBytes = columns * dtype.bitsPerElement / 8
      let error = packed.withUnsafeMutableBytes { packedOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          nonisolated(unsafe) let (packedOut, scaleOut) = (packedOut, scaleOut)
          return RowLoops.parallelRowBlocks(input, rows: rows, rowBytes: rowBytes) { range, stats in
            _ = sck_quantize_int_rows(
              source + range.lowerBound * rowBytes, range.count, columns, group, Int32(bits), dtypeCode, epsilon,
              packedOut.baseAddress!.assumingMemoryBound(to: UInt8.self) + range.lowerBound * words * 4,
              scaleOut.baseAddress! + range.lowerBound * groups, stats)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: outputs(
          packed: packed, scales: scales, zeroPoints: zeroPoints, rows: rows, columns: columns, dtype: dtype),
        reconstruction: .measured(error))
    }

    if !searching {
      // Round-to-nearest: the C kernel (the same arithmetic, vectorised where the CPU
      // allows), rows in parallel.
      let dtypeCode = RowLoops.kernelDType(dtype)
      let symmetricFlag: Int32 = symmetric ? 1 : 0
      let epsilon = round.epsilon
      let error = packed.withUnsafeMutableBytes { packedOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          zeroPoints.withUnsafeMutableBufferPointer { zeroOut in
            nonisolated(unsafe) let (packedOut, scaleOut, zeroOut) = (packedOut, scaleOut, zeroOut)
            return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
              let rowPacked = packedOut.baseAddress! + row * words * 4
              // 8-bit codes are already the packed bytes; narrower ones are packed after.
              let codes =
                bits == 8
                ? rowPacked.assumingMemoryBound(to: UInt8.self)
                : UnsafeMutablePointer<UInt8>.allocate(capacity: columns)
              defer { if bits != 8 { codes.deallocate() } }
              sck_quantize_int_groups(
                values.baseAddress, groups, group, Int32(bits), symmetricFlag, dtypeCode, epsilon, codes,
                rowPacked.assumingMemoryBound(to: UInt32.self), scaleOut.baseAddress! + row * groups,
                symmetricFlag == 0 ? zeroOut.baseAddress! + row * groups : nil, reconstruction.baseAddress)
            }
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: outputs(
          packed: packed, scales: scales, zeroPoints: zeroPoints, rows: rows, columns: columns, dtype: dtype),
        reconstruction: .measured(error))
    }

    // The search, rows in parallel: each row writes only its own scales, zero points and
    // words. The C kernel (AVX2, Float32 and BFloat16) tries all clipping factors at once
    // with the same arithmetic; the loop below is the portable path and the reference.
    let factors = ScaleSearch.clippingFactors
    let kernelDType: Int32 = dtype == .f32 ? 0 : dtype == .bf16 ? 1 : -1
    let epsilon = round.epsilon
    let (error, baseline) = try scales.withUnsafeMutableBufferPointer { (scaleOut) throws(SwiftCompressError) in
      try zeroPoints.withUnsafeMutableBufferPointer { (zeroOut) throws(SwiftCompressError) in
        try packed.withUnsafeMutableBufferPointer { (packedOut) throws(SwiftCompressError) in
          nonisolated(unsafe) let (scalesOut, zeroPointsOut) = (scaleOut, zeroOut)
          nonisolated(unsafe) let wordsOut = UnsafeMutableRawBufferPointer(packedOut)
          return try RowLoops.forEachRowInParallel(input, rows: rows, columns: columns, baseline: searching) {
            row, values, reconstruction, alternative in
            var rowCodes = [UInt8](repeating: 0, count: columns)
            if kernelDType >= 0,
              sck_int_mse_row(
                values.baseAddress, groups, group, Int32(bits), symmetric ? 1 : 0, kernelDType, epsilon, factors,
                factors.count, scalesOut.baseAddress! + row * groups,
                symmetric ? nil : zeroPointsOut.baseAddress! + row * groups, &rowCodes, reconstruction.baseAddress,
                alternative.baseAddress) == 0
            {
              Self.pack(rowCodes, bits: bits, into: wordsOut, wordOffset: row * words)
              return
            }
            for g in 0..<groups {
              let range = (g * group)..<(g * group + group)
              var (scale, zeroPoint) = parameters(values, range, alpha: 1)
              if searching {
                for i in range {
                  alternative[i] = rule.value(code(values[i], scale, zeroPoint), scale: scale, zeroPoint: zeroPoint)
                }
                var best = RowLoops.squaredError(values, range) { alternative[$0] }
                for alpha in ScaleSearch.clippingFactors.dropFirst() {
                  let (s, z) = parameters(values, range, alpha: alpha)
                  let candidate = RowLoops.squaredError(values, range) {
                    rule.value(code(values[$0], s, z), scale: s, zeroPoint: z)
                  }
                  if candidate < best { (best, scale, zeroPoint) = (candidate, s, z) }
                }
              }
              scalesOut[row * groups + g] = scale
              if !symmetric { zeroPointsOut[row * groups + g] = zeroPoint }
              for i in range {
                let q = code(values[i], scale, zeroPoint)
                rowCodes[i] = UInt8(q + offset)
                reconstruction[i] = rule.value(q, scale: scale, zeroPoint: zeroPoint)
              }
            }
            Self.pack(rowCodes, bits: bits, into: wordsOut, wordOffset: row * words)
          }
        }
      }
    }
    return TransformResult(
      outputs: outputs(
        packed: packed, scales: scales, zeroPoints: zeroPoints, rows: rows, columns: columns, dtype: dtype),
      reconstruction: .measured(error), baseline: baseline)
  }

  /// The outputs: packed codes, scales, packed zero points (asymmetric) and the shape.
  private func outputs(
    packed: [UInt8], scales: [Float], zeroPoints: [Float], rows: Int, columns: Int, dtype: DType
  ) -> [OutputData] {
    let groups = scales.count / max(rows, 1)
    let offset = Float(1 << (bits - 1))
    var data: [OutputData] = [.owned(packed), .owned(DenseCodec.encode(scales, as: dtype))]
    if !symmetric {
      // Zero points are packed along the output dimension: word w of column g holds the
      // zero points of rows w * perWord ..< (w + 1) * perWord (the last word zero-padded).
      let zeroWords = (rows + perWord - 1) / perWord
      var result = [UInt8](repeating: 0, count: zeroWords * groups * 4)
      result.withUnsafeMutableBytes { dst in
        for w in 0..<zeroWords {
          for g in 0..<groups {
            var word: UInt32 = 0
            for j in 0..<perWord where w * perWord + j < rows {
              word |= UInt32(zeroPoints[(w * perWord + j) * groups + g] + offset) << UInt32(bits * j)
            }
            dst.storeBytes(of: word.littleEndian, toByteOffset: (w * groups + g) * 4, as: UInt32.self)
          }
        }
      }
      data.append(.owned(result))
    }
    data.append(.owned([Int64(rows), Int64(columns)].withUnsafeBytes { Array($0) }))
    return data
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard let weight = QuantizedNames.weight(of: stored.name, suffix: "_packed"), stored.shape.count == 2 else {
      return nil
    }
    return DenseWeight(
      name: weight, shape: [stored.shape[0], stored.shape[1] * 32 / bits], dtype: nil, note: "dequantized")
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool { QuantizedNames.isCompanion(stored.name) }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let scale = try requiredCompanion(primary, weight.name + "_scale")
    let scaleShape = scale.descriptor.shape
    guard scaleShape.count == 2, scaleShape[0] > 0, scaleShape[1] > 0 else {
      throw .invalidTensor(name: scale.descriptor.name, reason: "shape \(scaleShape) is not a 2-D grid of scales")
    }
    let scales = scale.floats()
    let rule = IntegerCodeRule(bits: bits, symmetric: symmetric, dtype: scale.descriptor.dtype)
    let group = columns / scaleShape[1]
    var zeroPoints = [Float](repeating: 0, count: scales.count)
    if let zp = primary.companion(named: weight.name + "_zero_point") {
      zeroPoints = self.zeroPoints(
        zp.bytes, wordRows: zp.descriptor.shape[0], rows: rows, groups: zp.descriptor.shape[1])
    }
    let codes = Self.unpackStream(primary.bytes, rows: rows, columns: columns, bits: bits)
    var dense = [Float](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      for column in 0..<columns {
        let index = row * scaleShape[1] + column / group
        let q = Float(Int(codes[row * columns + column]) - (1 << (bits - 1)))
        dense[row * columns + column] = rule.value(q, scale: scales[index], zeroPoint: zeroPoints[index])
      }
    }
    return dense
  }

  /// The zero points (row-major [rows, groups], as integers qmin...qmax) stored in `bytes`,
  /// `wordRows` x `groups` int32 words packed along the output dimension: word w of group
  /// g holds the zero points of rows w * perWord ..< (w + 1) * perWord.
  func zeroPoints(_ bytes: UnsafeRawBufferPointer, wordRows: Int, rows: Int, groups: Int) -> [Float] {
    let codes = Self.unpack(bytes, rows: wordRows, words: groups, bits: bits)
    var zeroPoints = [Float](repeating: 0, count: rows * groups)
    for row in 0..<rows {
      for g in 0..<groups {
        let code = codes[((row / perWord) * groups + g) * perWord + row % perWord]
        zeroPoints[row * groups + g] = Float(Int(code) - (1 << (bits - 1)))
      }
    }
    return zeroPoints
  }

  /// Packs one row's codes as a little-endian bit stream into 32-bit words from
  /// `wordOffset` on (the layout `sck_quantize_int_groups` writes).
  static func pack(_ codes: [UInt8], bits: Int, into out: UnsafeMutableRawBufferPointer, wordOffset: Int) {
    var words = [UInt32](repeating: 0, count: (codes.count * bits + 31) / 32)
    for (i, code) in codes.enumerated() {
      let bit = i * bits
      let shift = bit % 32
      words[bit / 32] |= UInt32(code) << UInt32(shift)
      if shift + bits > 32 { words[bit / 32 + 1] |= UInt32(code) >> UInt32(32 - shift) }
    }
    for (w, word) in words.enumerated() {
      out.storeBytes(of: word.littleEndian, toByteOffset: (wordOffset + w) * 4, as: UInt32.self)
    }
  }

  /// The `bits`-bit codes of `rows` rows of `columns` codes, each row a little-endian bit
  /// stream of ceil(columns * bits / 32) int32 words.
  static func unpackStream(_ bytes: UnsafeRawBufferPointer, rows: Int, columns: Int, bits: Int) -> [UInt32] {
    let words = (columns * bits + 31) / 32
    let mask: UInt32 = (1 << UInt32(bits)) - 1
    var codes = [UInt32](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      func word(_ w: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: (row * words + w) * 4, as: UInt32.self))
      }
      for i in 0..<columns {
        let bit = i * bits
        let shift = bit % 32
        var value = word(bit / 32) >> UInt32(shift)
        if shift + bits > 32 { value |= word(bit / 32 + 1) << UInt32(32 - shift) }
        codes[row * columns + i] = value & mask
      }
    }
    return codes
  }

  /// The `bits`-bit codes of `rows` rows of `words` little-endian int32 words each, each
  /// word holding 32 / bits codes (the zero points' layout).
  static func unpack(_ bytes: UnsafeRawBufferPointer, rows: Int, words: Int, bits: Int) -> [UInt32] {
    let perWord = 32 / bits
    let mask: UInt32 = (1 << UInt32(bits)) - 1
    var codes = [UInt32](repeating: 0, count: rows * words * perWord)
    for w in 0..<(rows * words) {
      let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: w * 4, as: UInt32.self))
      for j in 0..<perWord { codes[w * perWord + j] = (word >> UInt32(bits * j)) & mask }
    }
    return codes
  }
}

/// The integer quantizer's arithmetic for one value, each step in the weight's dtype as
/// the reference computes it; `encode`'s search, `decode` and the grid share it (the C
/// kernel does the same steps).
struct IntegerCodeRule: Sendable {
  let qmin: Float
  let qmax: Float
  let symmetric: Bool
  let round: DTypeRounding

  init(bits: Int, symmetric: Bool, dtype: DType) {
    qmin = Float(-(1 << (bits - 1)))
    qmax = Float((1 << (bits - 1)) - 1)
    self.symmetric = symmetric
    round = DTypeRounding(dtype)
  }

  /// The code q = round-half-even(clamp(r(W / s) (+ zp), qmin, qmax)), as a Float.
  @inline(__always)
  func code(_ value: Float, scale: Float, zeroPoint: Float) -> Float {
    var scaled = round(value / scale)
    if !symmetric { scaled = round(scaled + zeroPoint) }
    return min(max(scaled, qmin), qmax).rounded(.toNearestOrEven)
  }

  /// The value code `q` decodes to: r(r(q - zp) x s).
  @inline(__always)
  func value(_ q: Float, scale: Float, zeroPoint: Float) -> Float {
    round(round(q - zeroPoint) * scale)
  }
}
