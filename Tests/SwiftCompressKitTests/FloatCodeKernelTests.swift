import CKernels
import CheckpointIO
import TestSupport
import Testing

@testable import SwiftCompressKit

/// The C kernels encode E4M3 and E2M1 without branches or tables; these sweeps compare
/// them, on both kernel paths, with the table-based Swift encoders (which match
/// ml_dtypes on every code, see CheckpointIOTests).
@Suite("FP8 and FP4 encoders in the kernels", .serialized)
struct FloatCodeKernelTests {
  /// Every 997th Float32 bit pattern of magnitude at most `limit`, both signs, plus every
  /// exact value of the format and the midpoints between neighbours (the ties).
  static func sweep(limit: Float, values: [Float]) -> [Float] {
    var result: [Float] = []
    var bits: UInt32 = 0
    while bits <= limit.bitPattern {
      result.append(Float(bitPattern: bits))
      bits += 997
    }
    let sorted = Set(values.map(abs)).sorted()
    result += sorted
    result += zip(sorted, sorted.dropFirst()).map { ($0 + $1) / 2 }
    result += result.map { -$0 }
    return result
  }

  static func withBothPaths(_ body: () -> Void) {
    _ = KernelPaths.both(body)
  }

  @Test func e4m3CodesAndValuesMatchTheTableEncoder() {
    let x = Self.sweep(limit: 448, values: Float32Conversion.e4m3Table.filter(\.isFinite))
    Self.withBothPaths {
      var codes = [UInt8](repeating: 0, count: x.count)
      var recon = [Float](repeating: 0, count: x.count)
      sck_quantize_fp8(x, x.count, [1], x.count, 0, &codes, &recon)
      var mismatches = 0
      for i in x.indices {
        let expected = Float32Conversion.e4m3Code(x[i])
        if codes[i] != expected
          || recon[i].bitPattern != Float32Conversion.e4m3Table[Int(expected)].bitPattern
        {
          mismatches += 1
          if mismatches < 5 { Issue.record("x = \(x[i]): code \(codes[i]) value \(recon[i]), expected \(expected)") }
        }
      }
      #expect(mismatches == 0, "\(x.count) values")
    }
  }

  @Test func e2m1CodesAndValuesMatchTheTableEncoder() {
    // MXFP4 groups of 32 whose first element, 6, fixes the exponent at 127 (scale 1),
    // so the other 31 are encoded as they are.
    var values = Self.sweep(limit: 6, values: Float32Conversion.e2m1Table)
    values += [Float](repeating: 0, count: (31 - values.count % 31) % 31)
    let groups = values.count / 31
    var x: [Float] = []
    for g in 0..<groups { x += [6] + values[(g * 31)..<(g * 31 + 31)] }
    Self.withBothPaths {
      var exponents = [UInt8](repeating: 0, count: groups)
      var packed = [UInt8](repeating: 0, count: x.count / 2)
      var recon = [Float](repeating: 0, count: x.count)
      sck_quantize_mxfp4(x, groups, 0, &exponents, &packed, &recon)
      #expect(exponents.allSatisfy { $0 == 127 })
      var mismatches = 0
      for i in x.indices {
        let code = i % 2 == 0 ? packed[i / 2] & 0xF : packed[i / 2] >> 4
        let expected = MXFP4Codec.e2m1Code(x[i])
        if code != expected || recon[i].bitPattern != Float32Conversion.e2m1Table[Int(expected)].bitPattern {
          mismatches += 1
          if mismatches < 5 { Issue.record("x = \(x[i]): code \(code) value \(recon[i]), expected \(expected)") }
        }
      }
      #expect(mismatches == 0, "\(x.count) values")
    }
  }

  @Test func mxExponentFollowsTheRoundingRuleAtEveryBoundary() {
    for e in -126...127 {
      let p = Float(sign: .plus, exponent: e, significand: 1)
      let expected = { (k: Int) in UInt8(clamping: min(max(127 + k - 2, 0), 254)) }
      #expect(sck_mx_exponent(p) == expected(e))
      #expect(sck_mx_exponent(p * Float(1.75).nextDown) == expected(e))
      #expect(sck_mx_exponent(p * 1.75) == expected(e + 1))
    }
    #expect(sck_mx_exponent(.infinity) == 0)
    #expect(sck_mx_exponent(.nan) == 0)
    #expect(sck_mx_exponent(.leastNonzeroMagnitude) == 0)
  }
}
