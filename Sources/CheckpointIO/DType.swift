/// The element types a safetensors file can hold, spelled exactly as in the header.
///
/// `F4` (E2M1) packs two values per byte: shapes are logical (element counts), and
/// element `2k` sits in the low nibble of byte `k`.
public enum DType: String, CaseIterable, Sendable, Codable, Hashable {
  case bool = "BOOL"
  case u8 = "U8"
  case i8 = "I8"
  case i16 = "I16"
  case u16 = "U16"
  case i32 = "I32"
  case u32 = "U32"
  case i64 = "I64"
  case u64 = "U64"
  case f16 = "F16"
  case bf16 = "BF16"
  case f32 = "F32"
  case f64 = "F64"
  case f8E4M3 = "F8_E4M3"
  case f8E5M2 = "F8_E5M2"
  case f8E8M0 = "F8_E8M0"
  case f4 = "F4"

  /// Storage size of one element in bits (4 for `F4`).
  public var bitsPerElement: Int {
    switch self {
    case .f4: 4
    case .bool, .u8, .i8, .f8E4M3, .f8E5M2, .f8E8M0: 8
    case .i16, .u16, .f16, .bf16: 16
    case .i32, .u32, .f32: 32
    case .i64, .u64, .f64: 64
    }
  }

  /// True for the floating-point types, including the 8- and 4-bit formats.
  public var isFloatingPoint: Bool {
    switch self {
    case .f16, .bf16, .f32, .f64, .f8E4M3, .f8E5M2, .f8E8M0, .f4: true
    default: false
    }
  }

  /// The storage size of `elementCount` elements, or nil when it overflows or is
  /// not a whole number of bytes (an odd number of `F4` values).
  public func byteCount(elementCount: Int) -> Int? {
    let (bits, overflow) = elementCount.multipliedReportingOverflow(by: bitsPerElement)
    guard !overflow, bits % 8 == 0 else { return nil }
    return bits / 8
  }

  /// The known names, for error messages.
  public static var knownNames: String {
    allCases.map(\.rawValue).joined(separator: ", ")
  }
}

/// The number of elements of `shape`, or nil when the product overflows `Int`.
@inlinable
public func elementCount(of shape: [Int]) -> Int? {
  var count = 1
  for dim in shape {
    let (product, overflow) = count.multipliedReportingOverflow(by: dim)
    if overflow { return nil }
    count = product
  }
  return count
}
