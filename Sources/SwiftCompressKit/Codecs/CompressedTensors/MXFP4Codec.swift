import CKernels
import CheckpointIO
import Foundation

/// compressed-tensors' `mxfp4-pack-quantized` layout (MXFP4A16): for a weight W [out, in],
/// `<weight>_packed` U8 [out, in / 2] and `<weight>_scale` U8 [out, in / 32] (E8M0 exponents).
///
/// MXFP4 (OCP microscaling): per 32 values an E8M0 exponent e = 127 + floor(log2(m)) - 2,
/// where m is the group's amax with its mantissa rounded to a power of two as the
/// reference does (up when the mantissa is at least 1.75), and E2M1 codes of
/// clamp(W / 2^(e-127), +-6) rounded to nearest even; two codes per byte, even element
/// in the low nibble. The MSE search also tries e - 1 and e + 1.
///
/// Decoding is code x 2^(e-127).
public struct MXFP4Codec: QuantizationCodec {
  public init() {}

  public var format: String { "mxfp4-pack-quantized" }
  public var bits: Int { 4 }

  public static let readableFormat = "mxfp4-pack-quantized"

  public static func described(format: String, weights: JSONValue?) -> MXFP4Codec? {
    format == "mxfp4-pack-quantized" ? MXFP4Codec() : nil
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    try FP4Layout.check(weight, module: module, group: 32)
    return (
      [
        PlannedTensor(name: weight.name + "_packed", dtype: .u8, shape: [rows, columns / 2]),
        PlannedTensor(name: weight.name + "_scale", dtype: .u8, shape: [rows, columns / 32]),
      ], "E8M0 scale per 32"
    )
  }

  public var weightArguments: [JSONMember] {
    FP4Layout.arguments(group: 32, strategy: "group") + [JSONMember("scale_dtype", .string("torch.uint8"))]
  }

  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let round = DTypeRounding(input.descriptor.dtype)
    let groups = columns / 32
    let searching = context.scaleSearch == .mse
    var exponents: [UInt8] = RowLoops.uninitialized(rows * groups)  // every element written below
    // The search ORs nibbles in; the kernel writes whole bytes.
    var packed =
      searching ? [UInt8](repeating: 0, count: rows * columns / 2) : RowLoops.uninitialized(rows * columns / 2)
    func power(_ e: Int) -> Float { Self.scale(exponent: e) }
    func code(_ value: Float, _ scale: Float) -> UInt8 { Self.code(value, scale: scale, round: round) }
    if !searching, round.dtype == .f32 || round.dtype == .bf16, let base = input.bytes.baseAddress {
      // Round-to-nearest from the stored rows in one pass, blocks of rows in parallel.
      nonisolated(unsafe) let source = base
      let dtypeCode = RowLoops.kernelDType(round.dtype)
      let rowBytes = columns * round.dtype.bitsPerElement / 8
      let error = packed.withUnsafeMutableBufferPointer { packedOut in
        exponents.withUnsafeMutableBufferPointer { exponentOut in
          nonisolated(unsafe) let (packedOut, exponentOut) = (packedOut, exponentOut)
          return RowLoops.parallelRowBlocks(input, rows: rows, rowBytes: rowBytes) { range, stats in
            _ = sck_quantize_mxfp4_rows(
              source + range.lowerBound * rowBytes, range.count, columns, dtypeCode,
              exponentOut.baseAddress! + range.lowerBound * groups,
              packedOut.baseAddress! + range.lowerBound * columns / 2, stats)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error))
    }
    if !searching {
      let dtypeCode = RowLoops.kernelDType(round.dtype)
      let error = packed.withUnsafeMutableBufferPointer { packedOut in
        exponents.withUnsafeMutableBufferPointer { exponentOut in
          nonisolated(unsafe) let (packedOut, exponentOut) = (packedOut, exponentOut)
          return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_mxfp4(
              values.baseAddress, groups, dtypeCode, exponentOut.baseAddress! + row * groups,
              packedOut.baseAddress! + row * columns / 2, reconstruction.baseAddress)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error))
    }
    // The search, rows in parallel: each row writes only its own exponents and bytes.
    let (error, baseline) = try exponents.withUnsafeMutableBufferPointer { (exponentsOut) throws(SwiftCompressError) in
      try packed.withUnsafeMutableBufferPointer { (packedOut) throws(SwiftCompressError) in
        nonisolated(unsafe) let (exponentsOut, packedOut) = (exponentsOut, packedOut)
        return try RowLoops.forEachRowInParallel(input, rows: rows, columns: columns, baseline: searching) {
          row, values, reconstruction, alternative in
          for g in 0..<groups {
            let range = (g * 32)..<(g * 32 + 32)
            var amax: Float = 0
            for i in range { amax = max(amax, abs(values[i])) }
            var e = Int(MXFP4Codec.mxExponent(amax))
            if searching {
              let reference = e
              for i in range {
                alternative[i] = Float32Conversion.e2m1Table[Int(code(values[i], power(reference)))] * power(reference)
              }
              var best = RowLoops.squaredError(values, range) { alternative[$0] }
              for candidate in [reference - 1, reference + 1] where (0...254).contains(candidate) {
                let s = power(candidate)
                let error = RowLoops.squaredError(values, range) {
                  Float32Conversion.e2m1Table[Int(code(values[$0], s))] * s
                }
                if error < best { (best, e) = (error, candidate) }
              }
            }
            exponentsOut[row * groups + g] = UInt8(e)
            let scale = power(e)
            for i in range {
              let c = code(values[i], scale)
              packedOut[(row * columns + i) / 2] |= i % 2 == 0 ? c : c << 4
              reconstruction[i] = Float32Conversion.e2m1Table[Int(c)] * scale
            }
          }
        }
      }
    }
    return TransformResult(
      outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error), baseline: baseline)
  }

  /// The scale 2^(e - 127) of E8M0 exponent `e`, in Float32 (as the kernel and the decoder use it).
  static func scale(exponent e: Int) -> Float {
    Float(sign: .plus, exponent: e - 127, significand: 1)
  }

  /// The E2M1 code of `value` for scale `s`: clamp(r(value / s), +-6), the division in the
  /// weight's dtype, rounded to nearest even.
  @inline(__always)
  static func code(_ value: Float, scale: Float, round: DTypeRounding) -> UInt8 {
    e2m1Code(min(max(round(value / scale), -6), 6))
  }

  /// The E8M0 exponent of an MXFP4 group with absolute maximum `amax` (`sck_mx_exponent`).
  static func mxExponent(_ amax: Float) -> UInt8 {
    sck_mx_exponent(amax)
  }

  /// The E2M1 code of `x` (already clamped to +-6), ties to even; the sign is kept for zero.
  static func e2m1Code(_ x: Float) -> UInt8 {
    let sign: UInt8 = x.sign == .minus ? 0x8 : 0
    let a = abs(x)
    let magnitude: UInt8 =
      a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7
    return sign | magnitude
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    FP4Layout.densePrimary(stored)
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool { QuantizedNames.isCompanion(stored.name) }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let scale = try FP4Layout.scale(primary, weight)
    let exponents = Array(scale.bytes)
    let groups = scale.descriptor.shape[1]
    let group = columns / groups
    var dense = [Float](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      for column in 0..<columns {
        let byte = primary.bytes[(row * columns + column) / 2]
        let code = column % 2 == 0 ? byte & 0xF : byte >> 4
        let e = Int(exponents[row * groups + column / group])
        dense[row * columns + column] = Float32Conversion.e2m1Table[Int(code)] * Self.scale(exponent: e)
      }
    }
    return dense
  }
}

/// What the microscaled layouts share: a scale per fixed group of a row (MXFP4, MXFP6,
/// MXFP8, NVFP4), their config arguments, and for the FP4 ones two E2M1 codes per byte,
/// even element in the low nibble.
enum FP4Layout {
  static func check(_ weight: TensorDescriptor, module: String, group: Int) throws(SwiftCompressError) {
    let columns = weight.shape[1]
    guard columns % group != 0 else { return }
    let fix =
      weight.name.hasSuffix(".weight_a")
      ? "choose a factorize rank that is a multiple of \(group)" : "choose a group size that divides \(columns)"
    throw .invalidTensor(
      name: weight.name,
      reason:
        "its rows have \(columns) values and group size \(group) does not divide it; \(fix), or --ignore \(module)")
  }

  static func arguments(group: Int, strategy: String, bits: Int = 4) -> [JSONMember] {
    [
      JSONMember("dynamic", .bool(false)), JSONMember("group_size", .number(String(group))),
      JSONMember("num_bits", .number(String(bits))), JSONMember("strategy", .string(strategy)),
      JSONMember("symmetric", .bool(true)), JSONMember("type", .string("float")),
    ]
  }

  static func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard let weight = QuantizedNames.weight(of: stored.name, suffix: "_packed"), stored.shape.count == 2 else {
      return nil
    }
    return DenseWeight(name: weight, shape: [stored.shape[0], stored.shape[1] * 2], dtype: nil, note: "dequantized")
  }

  /// The weight's `_scale` companion, checked to be a 2-D grid.
  static func scale(_ primary: TensorInput, _ weight: DenseWeight) throws(SwiftCompressError) -> TensorInput {
    let scale = try requiredCompanion(primary, weight.name + "_scale")
    let shape = scale.descriptor.shape
    guard shape.count == 2, shape[0] > 0, shape[1] > 0 else {
      throw .invalidTensor(name: scale.descriptor.name, reason: "shape \(shape) is not a 2-D grid of scales")
    }
    return scale
  }
}
