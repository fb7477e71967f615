import CKernels

/// Conversions between stored element types and Float32.
///
/// Every floating-point dtype except F64 converts to Float32 exactly (F16, BF16,
/// F8_E4M3, F8_E5M2, F8_E8M0 and F4 values are all representable); F64 rounds to
/// nearest even, as numpy's `astype(float32)` does. Integer and boolean tensors
/// convert with Float32 rounding of large magnitudes.
public enum Float32Conversion {
  /// F8_E4M3 ("fn" variant: no infinities, S.1111.111 is NaN, max 448).
  public static let e4m3Table: [Float] = (0..<256).map { code in
    let sign: Float = code & 0x80 != 0 ? -1 : 1
    let exponent = (code >> 3) & 0xF
    let mantissa = code & 0x7
    if exponent == 0xF && mantissa == 0x7 { return .nan * sign }
    if exponent == 0 { return sign * Float(mantissa) / 8 * 0x1p-6 }
    return sign * (1 + Float(mantissa) / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
  }

  /// F8_E5M2 (IEEE-like: infinities and NaNs, max 57344).
  public static let e5m2Table: [Float] = (0..<256).map { code in
    let sign: Float = code & 0x80 != 0 ? -1 : 1
    let exponent = (code >> 2) & 0x1F
    let mantissa = code & 0x3
    if exponent == 0x1F { return mantissa == 0 ? sign * .infinity : .nan * sign }
    if exponent == 0 { return sign * Float(mantissa) / 4 * 0x1p-14 }
    return sign * (1 + Float(mantissa) / 4) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
  }

  /// F8_E8M0 (unsigned power of two 2^(e-127); 0xFF is NaN). Codes 0 and 1 give
  /// 2^-127 and 2^-126, which Float32 holds (the first as a subnormal).
  public static let e8m0Table: [Float] = (0..<256).map { code in
    code == 0xFF ? .nan : Float(sign: .plus, exponent: code - 127, significand: 1)
  }

  /// F4 (E2M1) codes 0...15: sign in bit 3, magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
  public static let e2m1Table: [Float] = (0..<16).map { code in
    let magnitudes: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    return code & 0x8 != 0 ? -magnitudes[code & 0x7] : magnitudes[code & 0x7]
  }

  /// Converts `count` elements of `dtype` stored (little-endian) in `source` to
  /// Float32 in `destination`, which must hold at least `count` elements.
  public static func convert(
    _ source: UnsafeRawBufferPointer, dtype: DType, count: Int,
    into destination: UnsafeMutableBufferPointer<Float>
  ) {
    precondition(destination.count >= count && source.count * 8 >= count * dtype.bitsPerElement)
    guard count > 0, let src = source.baseAddress, let dst = destination.baseAddress else { return }
    switch dtype {
    case .f32:
      UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
    case .f16:
      sck_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), dst, count)
    case .bf16:
      sck_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self), dst, count)
    case .f8E4M3:
      e4m3Table.withUnsafeBufferPointer {
        sck_lut8_to_f32(src.assumingMemoryBound(to: UInt8.self), $0.baseAddress, dst, count)
      }
    case .f8E5M2:
      e5m2Table.withUnsafeBufferPointer {
        sck_lut8_to_f32(src.assumingMemoryBound(to: UInt8.self), $0.baseAddress, dst, count)
      }
    case .f8E8M0:
      e8m0Table.withUnsafeBufferPointer {
        sck_lut8_to_f32(src.assumingMemoryBound(to: UInt8.self), $0.baseAddress, dst, count)
      }
    case .f4:
      for i in 0..<count {
        let byte = source[i / 2]
        dst[i] = e2m1Table[Int(i & 1 == 0 ? byte & 0xF : byte >> 4)]
      }
    case .f64: convertScalar(source, count, dst, Double.self) { Float($0) }
    case .bool, .u8: convertScalar(source, count, dst, UInt8.self) { Float($0) }
    case .i8: convertScalar(source, count, dst, Int8.self) { Float($0) }
    case .i16: convertScalar(source, count, dst, Int16.self) { Float($0) }
    case .u16: convertScalar(source, count, dst, UInt16.self) { Float($0) }
    case .i32: convertScalar(source, count, dst, Int32.self) { Float($0) }
    case .u32: convertScalar(source, count, dst, UInt32.self) { Float($0) }
    case .i64: convertScalar(source, count, dst, Int64.self) { Float($0) }
    case .u64: convertScalar(source, count, dst, UInt64.self) { Float($0) }
    }
  }

  @inline(__always)
  private static func convertScalar<T>(
    _ source: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>, _: T.Type,
    _ transform: (T) -> Float
  ) {
    let stride = MemoryLayout<T>.stride
    for i in 0..<count {
      dst[i] = transform(source.loadUnaligned(fromByteOffset: i * stride, as: T.self))
    }
  }

  /// Converts a stored tensor to a new Float32 array.
  public static func floats(_ source: UnsafeRawBufferPointer, dtype: DType, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
      convert(source, dtype: dtype, count: count, into: buffer)
      initialized = count
    }
  }

  /// The F8_E4M3 ("fn") code nearest to `x`, ties to even, as `torch.Tensor.to(float8_e4m3fn)`
  /// and ml_dtypes round: subnormals down to 2^-9; magnitudes above 448 saturate to 448
  /// (callers clamp first, as the quantizers do); NaN gives 0x7F with the sign.
  public static func e4m3Code(_ x: Float) -> UInt8 {
    let sign: UInt8 = x.sign == .minus ? 0x80 : 0
    if x.isNaN { return sign | 0x7F }
    let magnitude = min(abs(x), 448)
    if magnitude < 0x1p-6 {
      // Subnormal range: multiples of 2^-9; 8 of them round up to the smallest normal (code 0x08).
      return sign | UInt8((magnitude * 512).rounded(.toNearestOrEven))
    }
    let bits = magnitude.bitPattern
    var exponent = Int(bits >> 23) - 127 + 7
    var mantissa = (bits >> 20) & 0x7
    let remainder = bits & 0xF_FFFF
    if remainder > 0x8_0000 || (remainder == 0x8_0000 && mantissa & 1 == 1) {
      mantissa += 1
      if mantissa == 8 {
        mantissa = 0
        exponent += 1
      }
    }
    return sign | UInt8(min(exponent << 3 | Int(mantissa), 0x7E))
  }

  /// The dtypes `encode` can write.
  public static let encodableDTypes: [DType] = [.f32, .f16, .bf16, .f64]

  /// Encodes Float32 values as `dtype` (F32, F16 and BF16 with round-to-nearest-even,
  /// F64 exactly) into `destination`, which must hold `source.count` elements of `dtype`.
  /// Returns false for a dtype not in `encodableDTypes`.
  @discardableResult
  public static func encode(
    _ source: UnsafeBufferPointer<Float>, as dtype: DType, into destination: UnsafeMutableRawBufferPointer
  ) -> Bool {
    let count = source.count
    guard encodableDTypes.contains(dtype) else { return false }
    precondition(destination.count >= count * dtype.bitsPerElement / 8)
    guard count > 0, let src = source.baseAddress, let dst = destination.baseAddress else { return true }
    switch dtype {
    case .f32: dst.copyMemory(from: src, byteCount: count * 4)
    case .f16: sck_f32_to_f16(src, dst.assumingMemoryBound(to: UInt16.self), count)
    case .bf16: sck_f32_to_bf16(src, dst.assumingMemoryBound(to: UInt16.self), count)
    case .f64:
      for i in 0..<count { dst.storeBytes(of: Double(src[i]), toByteOffset: i * 8, as: Double.self) }
    default: return false
    }
    return true
  }
}
