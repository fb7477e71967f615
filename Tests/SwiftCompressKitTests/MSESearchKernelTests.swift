import CKernels
import CheckpointIO
import TestSupport
import Testing

@testable import SwiftCompressKit

/// The integer MSE search's C kernel (all clipping factors at once, AVX2) against the
/// Swift search it replaces (the portable path): the same scales, zero points, codes and
/// error sums, bit for bit, on weights built to meet the search's edge cases.
@Suite("MSE search kernel", .serialized)
struct MSESearchKernelTests {
  /// Rows of 256: Gaussian rows at scales from 2^-3 to 2^3 with outliers, an all-zero
  /// group, tiny and subnormal values, rows on exact ties of the 4- and 8-bit grids (for
  /// several clipping factors), one-signed rows (the asymmetric range), and a group whose
  /// only non-zero is negative zero's neighbour.
  static func weight(dtype: DType) -> [Float] {
    let (rows, columns) = (24, 256)
    var random = SplitMix64(seed: 20_261_203)
    var values = [Float](repeating: 0, count: rows * columns)
    for r in 0..<rows {
      for c in 0..<columns {
        let i = r * columns + c
        switch r {
        case 0: values[i] = c < 128 ? 0 : random.gaussian() * 0.02
        case 1: values[i] = Float(c % 31 - 15) * 0.5 * (c % 2 == 0 ? 1 : 1.0 / 17)  // ties of max/15
        case 2: values[i] = Float(c % 255 - 127) / 127.5 * 0.98  // ties of 0.98 max/127.5
        case 3: values[i] = random.gaussian() * 1e-5
        case 4: values[i] = Float(sign: .plus, exponent: -130 + c % 5, significand: 1) * (c % 2 == 0 ? 1 : -1)
        case 5: values[i] = abs(random.gaussian()) * 0.03  // one sign
        case 6: values[i] = -abs(random.gaussian()) * 0.03
        case 7: values[i] = c % 64 == 3 ? -0.001 : (c % 64 == 9 ? -0.0 : 0)
        default:
          values[i] =
            random.gaussian() * 0.02 * Float(sign: .plus, exponent: r % 7 - 3, significand: 1)
            * (i % 37 == 0 ? 8 : 1)
        }
      }
    }
    return DenseCodec.encode(values, as: dtype).withUnsafeBytes {
      Float32Conversion.floats($0, dtype: dtype, count: values.count)
    }
  }

  struct Case: Sendable, CustomStringConvertible {
    let bits: Int
    let symmetric: Bool
    let group: Int
    let dtype: DType
    var description: String { "int\(bits) \(symmetric ? "sym" : "asym") g\(group) \(dtype)" }
  }

  static let cases: [Case] = [4, 8].flatMap { bits in
    [true, false].flatMap { symmetric in
      [32, 128].flatMap { group in
        [DType.f32, .bf16].map { Case(bits: bits, symmetric: symmetric, group: group, dtype: $0) }
      }
    }
  }

  @Test(arguments: cases)
  func kernelEqualsTheSwiftSearch(_ test: Case) throws {
    let codec = IntegerPackCodec(bits: test.bits, symmetric: test.symmetric, groupSize: test.group)
    let context = QuantizationContext(scaleSearch: .mse)
    let values = Self.weight(dtype: test.dtype)
    func run() throws -> ([[UInt8]], ErrorAccumulator?, ErrorAccumulator?) {
      try QuantizationGridTests.withInput(values, shape: [24, 256], dtype: test.dtype) { input in
        let result = try codec.encode(input, context: context)
        guard case .measured(let error) = result.reconstruction else { return ([], nil, nil) }
        return (QuantizationGridTests.bytes(result), error, result.baseline)
      }
    }
    let (reference, kernel, level) = try KernelPaths.both(run)
    #expect(level == 1, "no AVX2 here: the kernel path was not run")
    #expect(kernel.0 == reference.0)
    #expect(kernel.1 == reference.1)
    #expect(kernel.2 == reference.2)
    #expect(kernel.1 != nil && kernel.2 != nil)
  }
}
