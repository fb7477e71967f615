import CheckpointIO
import Foundation
import LinearAlgebra
import SwiftCompressKit
import TestSupport
import Testing

/// ErrorFeedback (GPTQ / SparseGPT) on its own: properties that hold whatever the accumulation
/// order. The goldens from llm-compressor are in CalibratedGoldenTests.
@Suite struct ErrorFeedbackTests {
  /// Rounds to multiples of `step` (a stand-in grid).
  static func rounder(_ step: Float) -> (Int, UnsafeMutableBufferPointer<Float>) -> Void {
    { _, values in
      for i in values.indices { values[i] = (values[i] / step).rounded(.toNearestOrEven) * step }
    }
  }

  /// Gaussian weights [rows, columns] and H = XᵀX / n of correlated inputs with channel scales
  /// spread over two orders of magnitude (seeded).
  static func problem(rows: Int, columns: Int, seed: UInt64) -> (w: [Float], h: [Float]) {
    var rng = SplitMix64(seed: seed)
    let w = (0..<(rows * columns)).map { _ in rng.gaussian() }
    let n = 4 * columns
    let scales = (0..<columns).map { j in Float(pow(10.0, 2.0 * Double(j % 7) / 6.0 - 1.0)) }
    var x = [Double](repeating: 0, count: n * columns)
    for t in 0..<n {
      let shared = rng.gaussian()
      for j in 0..<columns { x[t * columns + j] = Double((0.6 * shared + rng.gaussian()) * scales[j]) }
    }
    // XᵀX / n by dsyrk (upper triangle), mirrored.
    var gram = [Double](repeating: 0, count: columns * columns)
    x.withUnsafeBufferPointer { xs in
      gram.withUnsafeMutableBufferPointer { accumulateGram(xs, rows: n, columns: columns, into: $0) }
    }
    var h = [Float](repeating: 0, count: columns * columns)
    for a in 0..<columns {
      for b in a..<columns {
        let v = Float(gram[a * columns + b] / Double(n))
        h[a * columns + b] = v
        h[b * columns + a] = v
      }
    }
    return (w, h)
  }

  /// tr(ΔW H ΔWᵀ): the output error the methods minimise.
  static func outputError(_ a: [Float], _ b: [Float], h: [Float], rows: Int, columns: Int) -> Double {
    var total = 0.0
    for r in 0..<rows {
      for i in 0..<columns {
        let di = Double(a[r * columns + i] - b[r * columns + i])
        if di == 0 { continue }
        for j in 0..<columns {
          total += di * Double(h[i * columns + j]) * Double(a[r * columns + j] - b[r * columns + j])
        }
      }
    }
    return total
  }

  @Test(arguments: [ErrorFeedback.Order.none, .static])
  func identityHessianIsRoundToNearest(order: ErrorFeedback.Order) throws {
    // With H = I nothing couples the columns: every column rounds on its own.
    let (rows, columns) = (8, 40)
    var rng = SplitMix64(seed: 7)
    let w = (0..<(rows * columns)).map { _ in rng.gaussian() }
    var h = [Float](repeating: 0, count: columns * columns)
    for j in 0..<columns { h[j * columns + j] = 1 }
    let result = try ErrorFeedback(blockSize: 16, order: order).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: Self.rounder(0.25))
    #expect(result.values == w.map { ($0 / 0.25).rounded(.toNearestOrEven) * 0.25 })
    // loss = Σ (w - q)² / d² / 2 with d² = 1 / (1 + λ).
    let expected = zip(w, result.values).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } * 1.01 / 2
    #expect(abs(result.loss - expected) <= 1e-4 * expected)
  }

  @Test(arguments: [ErrorFeedback.Order.none, .static])
  func feedbackLowersTheOutputError(order: ErrorFeedback.Order) throws {
    let (rows, columns) = (32, 96)
    let (w, h) = Self.problem(rows: rows, columns: columns, seed: 11)
    let rtn = w.map { ($0 / 0.5).rounded(.toNearestOrEven) * 0.5 }
    let result = try ErrorFeedback(blockSize: 32, order: order).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: Self.rounder(0.5))
    // Every value is on the grid, and the output error is well below round-to-nearest's.
    #expect(result.values.allSatisfy { ($0 / 0.5).rounded() * 0.5 == $0 })
    let gptq = Self.outputError(w, result.values, h: h, rows: rows, columns: columns)
    let plain = Self.outputError(w, rtn, h: h, rows: rows, columns: columns)
    #expect(gptq < 0.8 * plain, "GPTQ \(gptq) vs round-to-nearest \(plain)")
  }

  /// The result must not depend on the run's thread count (a problem large enough for
  /// OpenBLAS to split, were it allowed more than one thread).
  @Test func threadCountDoesNotChangeTheResult() throws {
    let (rows, columns) = (96, 512)
    let (w, h) = Self.problem(rows: rows, columns: columns, seed: 17)
    func solve(_ jobs: Int) throws -> [Float] {
      try Parallel.withJobs(jobs) {
        try ErrorFeedback(blockSize: 128).run(
          weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: Self.rounder(0.25)
        ).values
      }
    }
    #expect(try solve(1) == solve(2))
  }

  @Test func blockSizeChangesOnlyTheSummationOrder() throws {
    let (rows, columns) = (16, 64)
    let (w, h) = Self.problem(rows: rows, columns: columns, seed: 3)
    let small = try ErrorFeedback(blockSize: 8, order: .none).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: nil)
    let large = try ErrorFeedback(blockSize: 64, order: .none).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: nil)
    // Without rounding or a mask nothing moves.
    for (a, b) in zip(small.values, w) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b))) }
    for (a, b) in zip(large.values, w) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b))) }
  }

  @Test func nOfMMaskZeroesExactlyNOfEveryM() throws {
    let (rows, columns) = (16, 64)
    let (w, h) = Self.problem(rows: rows, columns: columns, seed: 5)
    let result = try ErrorFeedback(blockSize: 32, order: .none, mask: .nOfM(n: 2, m: 4)).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: nil)
    for r in 0..<rows {
      for g in stride(from: 0, to: columns, by: 4) {
        let zeros = (g..<(g + 4)).filter { result.values[r * columns + $0] == 0 }.count
        #expect(zeros == 2, "row \(r) group \(g)")
      }
    }
    // SparseGPT's reconstruction beats zeroing the same weights without feedback.
    var masked = w
    for i in masked.indices where result.values[i] == 0 { masked[i] = 0 }
    let sparse = Self.outputError(w, result.values, h: h, rows: rows, columns: columns)
    let plain = Self.outputError(w, masked, h: h, rows: rows, columns: columns)
    #expect(sparse < plain)
  }

  @Test func unstructuredMaskZeroesTheFraction() throws {
    let (rows, columns) = (16, 64)
    let (w, h) = Self.problem(rows: rows, columns: columns, seed: 9)
    let result = try ErrorFeedback(blockSize: 32, order: .none, mask: .unstructured(0.5)).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: nil)
    let zeros = result.values.filter { $0 == 0 }.count
    // Per block every weight up to the threshold: half, plus ties (none with Gaussian weights), plus one.
    #expect(zeros >= rows * columns / 2 && zeros <= rows * columns / 2 + 2)
  }

  @Test func deadInputsAreZeroed() throws {
    let (rows, columns) = (4, 16)
    let (w, hessian) = Self.problem(rows: rows, columns: columns, seed: 13)
    var h = hessian
    for j in 0..<columns {
      h[3 * columns + j] = 0
      h[j * columns + 3] = 0
    }
    let result = try ErrorFeedback(blockSize: 8).run(
      weight: w, rows: rows, columns: columns, hessian: h, module: "m", round: Self.rounder(0.25))
    for r in 0..<rows { #expect(result.values[r * columns + 3] == 0) }
  }

  @Test func hessianThatIsNeverPositiveDefiniteIsAnError() throws {
    let columns = 8
    var h = [Float](repeating: 0, count: columns * columns)
    for j in 0..<columns { h[j * columns + j] = j == 5 ? -4 : 1 }
    #expect {
      try ErrorFeedback().run(
        weight: [Float](repeating: 1, count: 2 * columns), rows: 2, columns: columns, hessian: h,
        module: "model.layers.0.mlp.down_proj", round: nil)
    } throws: { error in
      "\(error)".contains("model.layers.0.mlp.down_proj") && "\(error)".contains("not positive definite")
    }
  }

  @Test func dampeningIsRaisedWithAWarning() throws {
    // Rank-deficient but positive semi-definite H (two identical inputs) with no dampening:
    // the first factorization fails, a raised dampening succeeds.
    let columns = 6
    var h = [Float](repeating: 0, count: columns * columns)
    for j in 0..<columns { h[j * columns + j] = 1 }
    h[0 * columns + 1] = 1
    h[1 * columns + 0] = 1
    #expect {
      try ErrorFeedback(dampening: 0).run(
        weight: [Float](repeating: 0.3, count: 2 * columns), rows: 2, columns: columns, hessian: h, module: "m.q",
        round: nil)
    } throws: { "\($0)".contains("m.q") }
    let raised = try ErrorFeedback(dampening: 1e-9).run(
      weight: [Float](repeating: 0.3, count: 2 * columns), rows: 2, columns: columns, hessian: h, module: "m.q",
      round: nil)
    #expect(raised.dampening > 1e-9)
    #expect(raised.warnings.first?.contains("m.q") == true)
  }
}
