import CKernels
import CheckpointIO
import Foundation

/// compressed-tensors' `mxfp8-quantized` layout (MXFP8A16): for a weight W [out, in],
/// `<weight>` F8_E4M3 [out, in] (the quantized weight keeps the weight's name, as FP8's
/// does) and `<weight>_scale` U8 [out, in / 32], an E8M0 exponent per 32 values (`MXScale`
/// with E2M1's rounding threshold, as the reference uses, and offset 8). Values are
/// e4m3(clamp(W / S, +-448)), the division in W's dtype, rounded to nearest even (a
/// negative value that rounds to zero is -0). Decoding, as the reference's: code x
/// 2^(e-127) in BF16.
public struct MXFP8Codec: QuantizationCodec {
  public init() {}

  static let scaleRule = MXScale(elementMantissaBits: 1, offset: 8)

  public var format: String { "mxfp8-quantized" }
  public var bits: Int { 8 }
  public static let readableFormat = "mxfp8-quantized"

  public static func described(format: String, weights: JSONValue?) -> MXFP8Codec? {
    format == "mxfp8-quantized" ? MXFP8Codec() : nil
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    try FP4Layout.check(weight, module: module, group: 32)
    return (
      [
        PlannedTensor(name: weight.name, dtype: .f8E4M3, shape: [rows, columns]),
        PlannedTensor(name: weight.name + "_scale", dtype: .u8, shape: [rows, columns / 32]),
      ], "E8M0 scale per 32"
    )
  }

  public var weightArguments: [JSONMember] {
    FP4Layout.arguments(group: 32, strategy: "group", bits: 8) + [JSONMember("scale_dtype", .string("torch.uint8"))]
  }

  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let dtype = input.descriptor.dtype
    let groups = columns / 32
    var codes: [UInt8] = RowLoops.uninitialized(rows * columns)
    var exponents: [UInt8] = RowLoops.uninitialized(rows * groups)
    if context.scaleSearch == .mse {
      return try searched(input, rows: rows, columns: columns)
    }
    let dtypeCode = RowLoops.kernelDType(dtype)
    let error = codes.withUnsafeMutableBufferPointer { codeOut in
      exponents.withUnsafeMutableBufferPointer { exponentOut in
        nonisolated(unsafe) let (codeOut, exponentOut) = (codeOut, exponentOut)
        return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
          var scales = [Float](repeating: 1, count: groups)
          for g in 0..<groups {
            let (byte, scale) = Self.scaleRule.scale(amax: MXScale.amax(values, (g * 32)..<(g * 32 + 32)), dtype: dtype)
            exponentOut[row * groups + g] = byte
            scales[g] = scale
          }
          // e4m3(clamp(W / S, +-448)), each step in W's dtype: FP8's kernel with a scale per 32.
          sck_quantize_fp8(
            values.baseAddress, columns, scales, 32, dtypeCode, codeOut.baseAddress! + row * columns,
            reconstruction.baseAddress)
        }
      }
    }
    try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
    return TransformResult(outputs: [.owned(codes), .owned(exponents)], reconstruction: .measured(error))
  }

  /// The MSE search: per group, the reference's exponent e and e - 1, e + 1, keeping the
  /// one with the least squared error (ties: the reference's).
  private func searched(_ input: TensorInput, rows: Int, columns: Int) throws(SwiftCompressError)
    -> TransformResult
  {
    let dtype = input.descriptor.dtype
    let round = DTypeRounding(dtype)
    let groups = columns / 32
    let table = Float32Conversion.e4m3Table
    var codes = [UInt8](repeating: 0, count: rows * columns)
    var exponents = [UInt8](repeating: 0, count: rows * groups)
    func code(_ value: Float, _ scale: Float) -> UInt8 { Float8Codec.code(value, scale: scale, round: round) }
    let (error, baseline) = try RowLoops.forEachRow(input, rows: rows, columns: columns, baseline: true) {
      row, values, reconstruction, alternative in
      for g in 0..<groups {
        let range = (g * 32)..<(g * 32 + 32)
        let (reference, referenceScale) = Self.scaleRule.scale(amax: MXScale.amax(values, range), dtype: dtype)
        for i in range { alternative[i] = round(table[Int(code(values[i], referenceScale))] * referenceScale) }
        var best = (RowLoops.squaredError(values, range) { alternative[$0] }, reference, referenceScale)
        for candidate in [Int(reference) - 1, Int(reference) + 1] where (0...254).contains(candidate) {
          let s = MXScale.scale(byte: candidate, dtype: dtype)
          guard s > 0 else { continue }
          let e = RowLoops.squaredError(values, range) { round(table[Int(code(values[$0], s))] * s) }
          if e < best.0 { best = (e, UInt8(candidate), s) }
        }
        exponents[row * groups + g] = best.1
        for i in range {
          let c = code(values[i], best.2)
          codes[row * columns + i] = c
          reconstruction[i] = round(table[Int(c)] * best.2)
        }
      }
    }
    return TransformResult(
      outputs: [.owned(codes), .owned(exponents)], reconstruction: .measured(error), baseline: baseline)
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard QuantizedNames.weight(of: stored.name, suffix: "") != nil, stored.dtype == .f8E4M3, stored.shape.count == 2
    else { return nil }
    return DenseWeight(name: stored.name, shape: stored.shape, dtype: nil, note: "dequantized")
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
        let code = primary.bytes[row * columns + column]
        dense[row * columns + column] = Self.decoded(
          code, scale: MXScale.decodedScale(exponents[row * groups + column / group]))
      }
    }
    return dense
  }

  /// The value E4M3 code `code` decodes to with the decoder's scale `s` (BF16
  /// 2^(e - 127)), as the reference's decompressor computes it: r(r(q) x s) in BF16.
  @inline(__always)
  static func decoded(_ code: UInt8, scale: Float) -> Float {
    Float8Codec.value(code, scale: scale, round: DTypeRounding(.bf16))
  }
}
