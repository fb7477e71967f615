import CheckpointIO
import Foundation

/// The E8M0 group scale of compressed-tensors' MX layouts (`generate_mx_scales`), in the
/// weight's dtype: amax rounded to a power of two on its bit pattern (up when its mantissa
/// fraction reaches the element format's threshold), e = 127 + log2 of that - `offset`
/// (log2 of the element format's largest value), clamped to 0...255. The scale used is
/// S = 2^(e - 127) in the weight's dtype; where that is 0 (F16 below 2^-24), S is 1 and
/// the stored byte 127, as the reference's epsilon for a uint8 scale makes it.
struct MXScale {
  /// Mantissa bits of the element format whose rounding threshold the reference uses.
  let elementMantissaBits: Int
  /// floor(log2(largest element value)): 8 for E4M3, 2 for E2M3 and E2M1.
  let offset: Int

  /// The stored byte and the scale S for a group whose largest magnitude is `amax` (a
  /// value of `dtype`).
  func scale(amax: Float, dtype: DType) -> (byte: UInt8, scale: Float) {
    let (bits, mantissa): (UInt32, Int) =
      switch dtype {
      case .bf16: (amax.bitPattern >> 16, 7)
      case .f16: (UInt32(Float16(amax).bitPattern), 10)
      default: (amax.bitPattern, 23)
      }
    let total = dtype == .f32 ? 32 : 16
    let signExponent: UInt32 = (UInt32.max >> UInt32(32 - total)) ^ ((1 << UInt32(mantissa)) - 1)
    let rounded = (bits &+ (1 << UInt32(mantissa - elementMantissaBits - 1))) & signExponent
    let power: Float =
      switch dtype {
      case .bf16: Float(bitPattern: rounded << 16)
      case .f16: Float(Float16(bitPattern: UInt16(truncatingIfNeeded: rounded)))
      default: Float(bitPattern: rounded)
      }
    var e = 0
    if power > 0 {
      // A maximum that rounds up past the dtype's largest power of two takes the next
      // exponent, as MXFP4's kernel does, rather than an infinite scale.
      let exponent = power.isFinite ? Int(power.exponent) : (dtype == .f16 ? 16 : 128)
      e = min(max(127 + exponent - offset, 0), 255)
    }
    let s = Self.scale(byte: e, dtype: dtype)
    return s == 0 ? (127, 1) : (UInt8(e), s)
  }

  /// The scale S = 2^(byte - 127) in the weight's dtype that values are divided by for a
  /// stored byte (0 where the dtype cannot hold it, which no stored byte has: that case
  /// is stored as 127).
  static func scale(byte: Int, dtype: DType) -> Float {
    DTypeRounding(dtype)(Float(sign: .plus, exponent: byte - 127, significand: 1))
  }

  /// 2^(byte - 127) as the reference's decompressors compute it: in BF16.
  static func decodedScale(_ byte: UInt8) -> Float {
    DTypeRounding(.bf16)(Float(sign: .plus, exponent: Int(byte) - 127, significand: 1))
  }

  /// The largest magnitude of `values[range]`.
  static func amax(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>) -> Float {
    var m: Float = 0
    for i in range { m = max(m, abs(values[i])) }
    return m
  }
}
