import CKernels
import TestSupport
import Testing

/// Runs `body` once on the portable paths and once with the run-time dispatch (under
/// the lock every test that switches paths holds: see `KernelPaths`).
func bothPaths<T>(_ body: () -> T) -> (portable: T, dispatched: T) {
  let (portable, dispatched, _) = KernelPaths.both(body)
  return (portable, dispatched)
}

/// Lengths that cover empty input, vector bodies and tails.
let lengths = [0, 1, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025, 100_003]

func randomFloats(_ count: Int, seed: UInt64, specials: Bool = true) -> [Float] {
  var rng = SplitMix64(seed: seed)
  let special: [Float] = [
    0, -0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, 65504,
    65520, 1e-8,
  ]
  return (0..<count).map { i in
    if specials && i % 37 == 5 { return special[i % special.count] }
    let r = rng.next()
    return r % 3 == 0
      ? Float(bitPattern: UInt32(truncatingIfNeeded: r >> 7)) : Float(Double(Int64(bitPattern: r)) / 9.2e18 * 3)
  }
}

// Serialized: the tests switch the process-wide dispatch between paths.
@Suite("C kernels", .serialized)
struct KernelsTests {
  @Test func dispatchReportsItsLevel() {
    let (portable, dispatched, _) = KernelPaths.both { sck_simd_level() }
    #expect(portable == 0)
    #expect([0, 1].contains(dispatched))
  }

  @Test func halfToFloatIsExactForAllBitPatterns() {
    let all = (0...0xFFFF).map { UInt16($0) }
    let (portable, dispatched) = bothPaths { () -> [Float] in
      var out = [Float](repeating: 0, count: all.count)
      sck_f16_to_f32(all, &out, all.count)
      return out
    }
    for (i, bits) in all.enumerated() {
      let want = Float(Float16(bitPattern: bits))
      #expect(portable[i].bitPattern == dispatched[i].bitPattern)
      if want.isNaN {
        #expect(portable[i].isNaN && portable[i].sign == want.sign)
      } else if portable[i].bitPattern != want.bitPattern {
        Issue.record("f16 0x\(String(bits, radix: 16)): \(portable[i]) != \(want)")
      }
    }
  }

  @Test func bfloat16ToFloatIsAShift() {
    let all = (0...0xFFFF).map { UInt16($0) }
    let (portable, dispatched) = bothPaths { () -> [Float] in
      var out = [Float](repeating: 0, count: all.count)
      sck_bf16_to_f32(all, &out, all.count)
      return out
    }
    for (i, bits) in all.enumerated() {
      #expect(portable[i].bitPattern == UInt32(bits) << 16)
      #expect(dispatched[i].bitPattern == UInt32(bits) << 16)
    }
  }

  /// Swift's Float16(Float) rounds to nearest even: the independent reference.
  @Test func floatToHalfRoundsToNearestEvenLikeSwift() {
    var inputs = randomFloats(200_000, seed: 1)
    // Every half value and every midpoint between neighbours (the ties).
    for bits in 0..<0x7C00 {
      let h = Float(Float16(bitPattern: UInt16(bits)))
      let next = Float(Float16(bitPattern: UInt16(bits + 1)))
      inputs += [h, -h, (h + next) / 2, -(h + next) / 2, h.nextUp, h.nextDown]
    }
    let n = inputs.count
    let (portable, dispatched) = bothPaths { () -> [UInt16] in
      var out = [UInt16](repeating: 0, count: n)
      sck_f32_to_f16(inputs, &out, n)
      return out
    }
    #expect(portable == dispatched)
    var mismatches = 0
    for (i, x) in inputs.enumerated() {
      let want = Float16(x)
      if x.isNaN {
        if !(Float16(bitPattern: portable[i]).isNaN && Float16(bitPattern: portable[i]).sign == x.sign) {
          mismatches += 1
        }
      } else if portable[i] != want.bitPattern {
        mismatches += 1
      }
    }
    #expect(mismatches == 0)
  }

  /// Reference: the nearest bfloat16 found by comparing distances in Double, ties to
  /// even, with infinity standing at 2^128 for values beyond the largest finite one.
  @Test func floatToBFloat16RoundsToNearestEven() {
    var inputs = randomFloats(200_000, seed: 2)
    for hi in stride(from: 0, to: 0x7F80, by: 7) {
      let base = Float(bitPattern: UInt32(hi) << 16)
      let next = Float(bitPattern: UInt32(hi + 1) << 16)
      inputs += [base, (base + next) / 2, -((base + next) / 2), base.nextUp]
    }
    inputs += [.greatestFiniteMagnitude, Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF)]
    let n = inputs.count
    let (portable, dispatched) = bothPaths { () -> [UInt16] in
      var out = [UInt16](repeating: 0, count: n)
      sck_f32_to_bf16(inputs, &out, n)
      return out
    }
    #expect(portable == dispatched)
    var mismatches = 0
    for (i, x) in inputs.enumerated() {
      if x.isNaN {
        let got = Float(bitPattern: UInt32(portable[i]) << 16)
        if !(got.isNaN && got.sign == x.sign) { mismatches += 1 }
        continue
      }
      // Candidates: truncated toward zero, and the next bfloat16 away from zero (whose
      // value is 2^128 when it is the infinity pattern).
      let bits = x.bitPattern
      let down = bits & 0xFFFF_0000
      let up = down &+ 0x1_0000
      func magnitude(_ b: UInt32) -> Double {
        (b & 0x7F80_0000) == 0x7F80_0000 ? 0x1p128 : abs(Double(Float(bitPattern: b)))
      }
      let a = abs(Double(x))
      let below = a - magnitude(down), above = magnitude(up) - a
      let want: UInt32 =
        bits & 0xFFFF == 0 ? down : below < above ? down : below > above ? up : ((down >> 16) & 1 == 0 ? down : up)
      if UInt32(portable[i]) << 16 != want { mismatches += 1 }
    }
    #expect(mismatches == 0)
  }

  @Test(arguments: lengths)
  func conversionsAgreeOnEveryLengthAndMisalignedPointers(_ n: Int) {
    let floats = randomFloats(n + 1, seed: UInt64(n))
    let halves = floats.map { Float16($0).bitPattern }
    let results = bothPaths { () -> [[UInt32]] in
      var f16 = [UInt16](repeating: 0, count: n + 1)
      var bf16 = [UInt16](repeating: 0, count: n + 1)
      var back = [Float](repeating: 0, count: n + 1)
      var backBF = [Float](repeating: 0, count: n + 1)
      floats.withUnsafeBufferPointer { src in
        f16.withUnsafeMutableBufferPointer { sck_f32_to_f16(src.baseAddress! + 1, $0.baseAddress! + 1, n) }
        bf16.withUnsafeMutableBufferPointer { sck_f32_to_bf16(src.baseAddress! + 1, $0.baseAddress! + 1, n) }
      }
      halves.withUnsafeBufferPointer { src in
        back.withUnsafeMutableBufferPointer { sck_f16_to_f32(src.baseAddress! + 1, $0.baseAddress! + 1, n) }
        backBF.withUnsafeMutableBufferPointer { sck_bf16_to_f32(src.baseAddress! + 1, $0.baseAddress! + 1, n) }
      }
      return [f16.map { UInt32($0) }, bf16.map { UInt32($0) }, back.map(\.bitPattern), backBF.map(\.bitPattern)]
    }
    #expect(results.portable == results.dispatched)
    #expect(results.portable.allSatisfy { $0[0] == 0 })  // element 0 untouched
  }

  /// The in-block error-feedback update equals `t - e * f` with the product rounded first (what
  /// torch's outer product and subtraction give), bit for bit on both paths, skipping zero
  /// factors; every row length covers the vector body and its tail.
  @Test(arguments: [0, 1, 7, 8, 9, 17, 1025])
  func feedbackRankOneIsUnfusedOnBothPaths(rows: Int) {
    let count = 5
    let stride = rows + 3
    let start = randomFloats(stride * count, seed: 71, specials: false)
    let err = randomFloats(rows, seed: 72, specials: false)
    let factors: [Float] = [0.75, 0, -1.5e-3, 3.25, 1e-30]
    var want = start
    for k in 0..<count where factors[k] != 0 {
      for r in 0..<rows {
        let product = err[r] * factors[k]
        want[k * stride + r] = want[k * stride + r] - product
      }
    }
    let (portable, dispatched) = bothPaths { () -> [Float] in
      var columns = start
      sck_feedback_rank1(&columns, stride, count, err, factors, rows)
      return columns
    }
    #expect(portable.map(\.bitPattern) == want.map(\.bitPattern))
    #expect(dispatched.map(\.bitPattern) == want.map(\.bitPattern))
  }

  @Test func lookupTableConversion() {
    let codes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
    let table = (0..<256).map { Float($0) * 0.5 - 3 }
    var out = [Float](repeating: 0, count: codes.count)
    sck_lut8_to_f32(codes, table, &out, codes.count)
    #expect(out == codes.map { table[Int($0)] })
  }

  /// Statistics against a Double reference: exact for min, max, absmax and counts;
  /// sums within 1e-12 relative (both add exact squares in double, in another order).
  @Test(arguments: lengths)
  func statisticsMatchADoubleReferenceOnBothPaths(_ n: Int) {
    let x = randomFloats(n, seed: 10 + UInt64(n)).map { $0.isFinite && abs($0) > 1e30 ? $0 / 1e30 : $0 }
    let (portable, dispatched) = bothPaths { () -> sck_stats in
      var s = sck_stats()
      sck_stats_f32(x, n, &s)
      return s
    }
    #expect(portable.sum.bitPattern == dispatched.sum.bitPattern)
    #expect(portable.sum_sq.bitPattern == dispatched.sum_sq.bitPattern)
    #expect(portable.min == dispatched.min && portable.max == dispatched.max && portable.absmax == dispatched.absmax)
    #expect(portable.zeros == dispatched.zeros && portable.nans == dispatched.nans && portable.infs == dispatched.infs)
    let finite = x.filter(\.isFinite)
    let sum = finite.reduce(0.0) { $0 + Double($1) }
    let sumSq = finite.reduce(0.0) { $0 + Double($1) * Double($1) }
    #expect(abs(portable.sum - sum) <= 1e-12 * max(1, sumSq.squareRoot() * Double(n)))
    #expect(abs(portable.sum_sq - sumSq) <= 1e-12 * sumSq)
    #expect(portable.min == (finite.min() ?? .infinity))
    #expect(portable.max == (finite.max() ?? -.infinity))
    #expect(portable.absmax == (finite.map { abs($0) }.max() ?? 0))
    #expect(Int(portable.zeros) == x.filter { $0 == 0 }.count)
    #expect(Int(portable.nans) == x.filter(\.isNaN).count)
    #expect(Int(portable.infs) == x.filter(\.isInfinite).count)
  }

  @Test(arguments: lengths)
  func errorStatisticsMatchADoubleReferenceOnBothPaths(_ n: Int) {
    let ref = randomFloats(n, seed: 20 + UInt64(n)).map { $0.isFinite && abs($0) > 1e30 ? $0 / 1e30 : $0 }
    var rng = SplitMix64(seed: 30)
    let out = ref.map { $0 * (1 + Float(Int64(bitPattern: rng.next()) % 1000) * 1e-6) }
    let (portable, dispatched) = bothPaths { () -> sck_error_stats in
      var s = sck_error_stats()
      sck_error_stats_f32(ref, out, n, &s)
      return s
    }
    for (a, b) in [
      (portable.ref_sq, dispatched.ref_sq), (portable.out_sq, dispatched.out_sq), (portable.err_sq, dispatched.err_sq),
      (portable.dot, dispatched.dot),
    ] {
      #expect(a.bitPattern == b.bitPattern)
    }
    #expect(portable.max_abs_err == dispatched.max_abs_err && portable.nonfinite == dispatched.nonfinite)
    var refSq = 0.0, errSq = 0.0, dot = 0.0, maxErr = 0.0, nonFinite = 0
    for (r, o) in zip(ref, out) {
      guard r.isFinite && o.isFinite else {
        nonFinite += 1
        continue
      }
      let e = Double(r) - Double(o)
      refSq += Double(r) * Double(r)
      errSq += e * e
      dot += Double(r) * Double(o)
      maxErr = max(maxErr, abs(e))
    }
    #expect(Int(portable.nonfinite) == nonFinite)
    #expect(abs(portable.ref_sq - refSq) <= 1e-12 * refSq)
    #expect(abs(portable.err_sq - errSq) <= 1e-12 * errSq)
    #expect(abs(portable.dot - dot) <= 1e-12 * refSq)
    #expect(portable.max_abs_err == Float(maxErr))
  }
}

@Suite("CRC-32")
struct CRC32Tests {
  /// The carry-less-multiplication path equals zlib's table code on every length from 0
  /// to 300 at every alignment 0..15, on a long buffer, and when continued from a
  /// running value; the known check value of "123456789" is 0xcbf43926.
  @Test func simdPathEqualsZlib() {
    var random = SplitMix64(seed: 42)
    let bytes = (0..<(1 << 20) + 77).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    bytes.withUnsafeBytes { raw in
      func both(_ start: Int, _ count: Int, from crc: UInt32 = 0) -> (UInt32, UInt32) {
        (sck_crc32(crc, raw.baseAddress! + start, count), sck_crc32_zlib(crc, raw.baseAddress! + start, count))
      }
      var mismatches = 0
      for offset in 0..<16 {
        for count in 0...300 {
          let (fast, reference) = both(offset, count)
          if fast != reference { mismatches += 1 }
        }
      }
      #expect(mismatches == 0)
      let (longFast, longReference) = both(3, raw.count - 3)
      #expect(longFast == longReference)
      let (continued, continuedReference) = both(1000, 5000, from: 0xDEAD_BEEF)
      #expect(continued == continuedReference)
    }
    let check = Array("123456789".utf8)
    #expect(check.withUnsafeBytes { sck_crc32(0, $0.baseAddress, $0.count) } == 0xCBF4_3926)
    let long = [UInt8](repeating: 0x5A, count: 1000)
    #expect(
      long.withUnsafeBytes { sck_crc32(0, $0.baseAddress, $0.count) }
        == long.withUnsafeBytes { sck_crc32_zlib(0, $0.baseAddress, $0.count) })
  }
}
