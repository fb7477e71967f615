import CKernels
import Foundation
import TestSupport
import Testing

// Serialized: the tests switch the process-wide dispatch between paths.
@Suite("Activation kernels", .serialized)
struct ActivationKernelsTests {
  /// Every 4099th float bit pattern from -104 to 89 (both signs), so every binade the exp sees.
  static let inputs: [Float] = {
    var values: [Float] = []
    for (sign, top) in [(UInt32(0), Float(89).bitPattern), (UInt32(0x8000_0000), Float(104).bitPattern)] {
      var bits: UInt32 = 0
      while bits <= top {
        values.append(Float(bitPattern: bits | sign))
        bits += 4099
      }
    }
    return values
  }()

  @Test func expIsWithinOneUlpOfExpfOnBothPaths() {
    let x = Self.inputs
    let (portable, dispatched) = bothPaths {
      [Float](unsafeUninitializedCapacity: x.count) { y, count in
        sck_exp_f32(x, y.baseAddress!, x.count)
        count = x.count
      }
    }
    #expect(portable.map(\.bitPattern) == dispatched.map(\.bitPattern))
    var maxRelative = 0.0
    for (value, result) in zip(x, dispatched) {
      let reference = expf(value)
      if reference >= .leastNormalMagnitude, reference.isFinite {
        maxRelative = max(maxRelative, abs(Double(result) - Double(reference)) / Double(reference))
      } else if reference.isFinite {
        // Subnormal results: within one of the smallest subnormals.
        #expect(abs(result - reference) <= .leastNonzeroMagnitude, "exp(\(value))")
      } else {
        #expect(result == reference, "exp(\(value))")
      }
    }
    // Measured: 1.19e-7 (one ulp; 1.003 ulp of the exact exp over every 61st pattern).
    #expect(maxRelative <= 0x1p-23, "max relative error \(maxRelative)")
  }

  @Test func expLimits() {
    let x: [Float] = [-.infinity, -1000, -104.5, 0, -0, 88.73, 89, 1000, .infinity, .nan]
    let (portable, dispatched) = bothPaths {
      [Float](unsafeUninitializedCapacity: x.count) { y, count in
        sck_exp_f32(x, y.baseAddress!, x.count)
        count = x.count
      }
    }
    for y in [portable, dispatched] {
      #expect(Array(y[0..<3]) == [0, 0, 0])  // Large negative inputs give 0.
      #expect(Array(y[3..<5]) == [1, 1])
      #expect(y[5..<9].allSatisfy { $0 == .infinity })
      #expect(y[9].isNaN)
    }
  }

  @Test(arguments: [1, 7, 8, 9, 64, 255, 256, 1025])
  func softmaxMatchesDoubleSoftmax(length: Int) {
    var rng = SplitMix64(seed: UInt64(length))
    // Attention-like scores, some far below the maximum (their exp is 0 after the shift).
    let scores: [Float] = (0..<length).map { i in
      let r = Float(Double(rng.next() >> 11) / Double(1 << 53))
      return i % 13 == 3 ? -200 + r : 12 * r - 6
    }
    let (portable, dispatched) = bothPaths {
      var row = scores
      sck_softmax_f32(&row, length)
      return row
    }
    #expect(portable.map(\.bitPattern) == dispatched.map(\.bitPattern))
    let top = Double(scores.max()!)
    let exps = scores.map { Foundation.exp(Double($0) - top) }
    let sum = exps.reduce(0, +)
    for (result, e) in zip(dispatched, exps) {
      // 1e-6 relative: a few float roundings of the exp, the 8-lane sum and the scaling.
      #expect(abs(Double(result) - e / sum) <= 1e-6 * (e / sum) + 1e-30)
    }
  }

  @Test func siluMatchesItsDefinition() {
    let g = (0..<1027).map { Float($0 - 513) / 16 } + [-200, 200, .infinity, -.infinity]
    let u = g.indices.map { Float($0 % 5) - 2 }
    let (portable, dispatched) = bothPaths {
      var gated = g
      sck_silu_f32(&gated, u, g.count)
      var plain = g
      sck_silu_f32(&plain, nil, g.count)
      return gated + plain
    }
    #expect(portable.map(\.bitPattern) == dispatched.map(\.bitPattern))
    for i in 0..<(g.count - 2) {
      let x = Double(g[i])
      let silu = x / (1 + Foundation.exp(-x))
      // 4e-7 relative: exp within one ulp, the division and the product rounded once each.
      #expect(abs(Double(dispatched[g.count + i]) - silu) <= 4e-7 * abs(silu) + 1e-37, "silu(\(x))")
      #expect(abs(Double(dispatched[i]) - silu * Double(u[i])) <= 4e-7 * abs(silu * Double(u[i])) + 1e-37)
    }
  }
}
