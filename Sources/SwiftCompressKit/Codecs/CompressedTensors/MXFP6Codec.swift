import CheckpointIO
import Foundation

/// compressed-tensors' `mxfp6-pack-quantized` layout (MXFP6A16): for a weight W [out, in],
/// `<weight>_packed` U8 [out, 3 in / 4], E2M3 codes (sign in bit 5, exponent bits 4-3 with
/// bias 1, mantissa bits 2-0; largest value 7.5), four codes c0...c3 stored as the three
/// little-endian bytes of c0 | c1 << 6 | c2 << 12 | c3 << 18; and `<weight>_scale` U8
/// [out, in / 32], an E8M0 exponent per 32 values (`MXScale` with E2M3's rounding threshold,
/// 1.9375, and offset 2). Values are clamp(W / S, +-7.5), the division in W's dtype, rounded
/// to nearest even on the E2M3 grid (steps of 0.125 below 2, 0.25 below 4, 0.5 above); a
/// negative value that rounds to zero keeps its sign. Decoding, as the reference's: value x
/// 2^(e-127) in BF16. The MSE search also tries e - 1 and e + 1.
public struct MXFP6Codec: QuantizationCodec {
  public init() {}

  static let scaleRule = MXScale(elementMantissaBits: 3, offset: 2)

  public var format: String { "mxfp6-pack-quantized" }
  public var bits: Int { 6 }
  public static let readableFormat = "mxfp6-pack-quantized"

  public static func described(format: String, weights: JSONValue?) -> MXFP6Codec? {
    format == "mxfp6-pack-quantized" ? MXFP6Codec() : nil
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    try FP4Layout.check(weight, module: module, group: 32)
    return (
      [
        PlannedTensor(name: weight.name + "_packed", dtype: .u8, shape: [rows, columns * 3 / 4]),
        PlannedTensor(name: weight.name + "_scale", dtype: .u8, shape: [rows, columns / 32]),
      ], "E2M3 values, E8M0 scale per 32"
    )
  }

  public var weightArguments: [JSONMember] {
    FP4Layout.arguments(group: 32, strategy: "group", bits: 6) + [JSONMember("scale_dtype", .string("torch.uint8"))]
  }

  /// The E2M3 magnitudes, by code (without the sign bit).
  static let magnitudes: [Float] = (0..<32).map { code in
    code < 8
      ? Float(code) / 8 : (1 + Float(code & 7) / 8) * Float(sign: .plus, exponent: (code >> 3) - 1, significand: 1)
  }

  /// The E2M3 code of `x` (already clamped to +-7.5): round half to even on the grid.
  static func code(_ x: Float) -> UInt8 {
    let a = abs(x)
    let exponent = a >= 1 ? Int(a.exponent) : 0
    let step = Float(sign: .plus, exponent: exponent - 3, significand: 1)
    let r = min((a / step).rounded(.toNearestOrEven) * step, 7.5)
    let magnitude: Int
    if r < 1 {
      magnitude = Int(r * 8)
    } else {
      let e = Int(r.exponent)
      magnitude = (e + 1) << 3 | Int((r / Float(sign: .plus, exponent: e, significand: 1) - 1) * 8)
    }
    return UInt8(magnitude) | (x.sign == .minus ? 0x20 : 0)
  }

  /// The value of an E2M3 code.
  static func value(_ code: UInt8) -> Float {
    let m = magnitudes[Int(code & 0x1F)]
    return code & 0x20 != 0 ? -m : m
  }

  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let dtype = input.descriptor.dtype
    let round = DTypeRounding(dtype)
    let groups = columns / 32
    let searching = context.scaleSearch == .mse
    var packed = [UInt8](repeating: 0, count: rows * columns * 3 / 4)
    var exponents = [UInt8](repeating: 0, count: rows * groups)
    func code(_ value: Float, _ scale: Float) -> UInt8 { Self.code(value, scale: scale, round: round) }
    let (error, baseline) = try RowLoops.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
      row, values, reconstruction, alternative in
      var codes = [UInt8](repeating: 0, count: columns)
      for g in 0..<groups {
        let range = (g * 32)..<(g * 32 + 32)
        var (byte, scale) = Self.scaleRule.scale(amax: MXScale.amax(values, range), dtype: dtype)
        if searching {
          for i in range { alternative[i] = round(Self.value(code(values[i], scale)) * scale) }
          var best = RowLoops.squaredError(values, range) { alternative[$0] }
          for candidate in [Int(byte) - 1, Int(byte) + 1] where (0...254).contains(candidate) {
            let s = MXScale.scale(byte: candidate, dtype: dtype)
            guard s > 0 else { continue }
            let e = RowLoops.squaredError(values, range) { round(Self.value(code(values[$0], s)) * s) }
            if e < best { (best, byte, scale) = (e, UInt8(candidate), s) }
          }
        }
        exponents[row * groups + g] = byte
        for i in range {
          codes[i] = code(values[i], scale)
          reconstruction[i] = round(Self.value(codes[i]) * scale)
        }
      }
      Self.pack(codes[...], into: &packed, at: row * columns * 3 / 4)
    }
    return TransformResult(
      outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error), baseline: baseline)
  }

  /// Packs E2M3 codes, four c0...c3 as the three little-endian bytes of
  /// c0 | c1 << 6 | c2 << 12 | c3 << 18, into `packed` from byte `at` on.
  static func pack(_ codes: ArraySlice<UInt8>, into packed: inout [UInt8], at start: Int) {
    let first = codes.startIndex
    for q in 0..<(codes.count / 4) {
      let c = first + 4 * q
      let word = UInt32(codes[c]) | UInt32(codes[c + 1]) << 6 | UInt32(codes[c + 2]) << 12 | UInt32(codes[c + 3]) << 18
      let at = start + 3 * q
      packed[at] = UInt8(word & 0xFF)
      packed[at + 1] = UInt8((word >> 8) & 0xFF)
      packed[at + 2] = UInt8(word >> 16)
    }
  }

  /// The E2M3 code of `value` for scale `s`: clamp(r(value / s), +-7.5), the division in
  /// the weight's dtype, on the E2M3 grid.
  @inline(__always)
  static func code(_ value: Float, scale: Float, round: DTypeRounding) -> UInt8 {
    code(min(max(round(value / scale), -7.5), 7.5))
  }

  /// The value code `code` decodes to with stored exponent `byte`, as the reference's
  /// decompressor computes it: value x 2^(byte - 127) in BF16.
  @inline(__always)
  static func decoded(_ code: UInt8, scale: Float) -> Float {
    DTypeRounding(.bf16)(value(code) * scale)
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard let weight = QuantizedNames.weight(of: stored.name, suffix: "_packed"), stored.shape.count == 2,
      stored.shape[1] % 3 == 0
    else { return nil }
    return DenseWeight(
      name: weight, shape: [stored.shape[0], stored.shape[1] / 3 * 4], dtype: nil, note: "dequantized")
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
      for q in 0..<(columns / 4) {
        let at = row * columns * 3 / 4 + 3 * q
        let word = UInt32(primary.bytes[at]) | UInt32(primary.bytes[at + 1]) << 8 | UInt32(primary.bytes[at + 2]) << 16
        for j in 0..<4 {
          let column = 4 * q + j
          let s = MXScale.decodedScale(exponents[row * groups + column / group])
          dense[row * columns + column] = Self.decoded(UInt8((word >> UInt32(6 * j)) & 0x3F), scale: s)
        }
      }
    }
    return dense
  }
}
