import CKernels
import CheckpointIO
import Foundation
import LinearAlgebra

/// The column-by-column error feedback GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
/// Quantization for Generative Pre-trained Transformers", arXiv 2210.17323) and SparseGPT
/// (Frantar and Alistarh 2023, arXiv 2301.00774) share: with H = XᵀX the second moment of the
/// module's inputs and U the upper Cholesky factor of (H + λI)⁻¹, each column j of W is
/// rounded (GPTQ: to the codec's grid) and/or zeroed (SparseGPT: by the mask it chooses with
/// w²/U_jj²), and its error e = (w - q) / U_jj is taken out of the columns after it:
/// W[:, k] -= e · U_jk. Columns go in blocks of `blockSize`: inside a block rank-one updates,
/// after it one sgemm for the rest ("lazy batch updates", section 3.4).
///
/// As llm-compressor 0.14 computes it (modifiers/gptq/gptq_quantize.py, helpers.py;
/// modifiers/pruning/sparsegpt/sgpt_sparsify.py): a dead input (H_jj = 0) gets H_jj = 1 and
/// its weights zero; λ = dampening x mean(diag H); the static activation order visits columns
/// by decreasing H_jj (the grid keeps each column's own group); unstructured masks choose per
/// block the `fraction` of the block's weights with the smallest w²/U_jj², N:M masks the N
/// smallest of every M consecutive columns per row. Differences: the work is on Wᵀ (a column
/// is contiguous) in Float32 with OpenBLAS, so sums run in another order (the goldens' tolerance
/// says how much that moves), and a Hessian that is not positive definite even after dampening
/// gets the dampening raised tenfold (up to three times, each with a warning) and then an error
/// naming the module, where the reference silently falls back to round-to-nearest.
public struct ErrorFeedback: Sendable {
  /// How columns are visited.
  public enum Order: String, Codable, Sendable, CaseIterable {
    /// Left to right.
    case none
    /// By decreasing H_jj, the reference's default (`actorder: static`).
    case `static`
  }

  /// What SparseGPT zeroes.
  public enum Mask: Sendable, Equatable {
    case none
    /// This fraction of each block's weights (the smallest w²/U_jj²).
    case unstructured(Double)
    /// `n` of every `m` consecutive inputs of each row.
    case nOfM(n: Int, m: Int)
  }

  public var blockSize: Int
  public var dampening: Double
  public var order: Order
  public var mask: Mask

  public static let defaultBlockSize = 128
  public static let defaultDampening = 0.01

  public init(
    blockSize: Int = defaultBlockSize, dampening: Double = defaultDampening, order: Order = .static,
    mask: Mask = .none
  ) {
    self.blockSize = blockSize
    self.dampening = dampening
    self.order = order
    self.mask = mask
  }

  /// What one run gives.
  public struct Result: Sendable {
    /// The new weight, row-major [rows, columns]: on the grid (when rounding) and zero where masked.
    public var values: [Float]
    /// Σ (w - q)² / U_jj² / 2 over every weight: the reference's loss.
    public var loss: Double
    /// The dampening used (raised from the configured one when H needed it).
    public var dampening: Double
    /// Warnings (dampening raised).
    public var warnings: [String]
  }

  /// What the feedback derives from H alone: the dead inputs, the visiting order, and U. Modules
  /// that read the same input (q, k and v; gate and up) share it through `SharedFactorization`.
  struct Prepared {
    var dead: [Bool]
    /// perm[c] is the original column visited c-th.
    var perm: [Int]
    var u: [Float]
    var dampening: Double
    /// Dampening raises, each "H + ... raised to ..." (the module's name is put before it).
    var raises: [String]
  }

  /// Runs the feedback on `weight` (row-major [rows, columns], Float32) with `hessian`
  /// (row-major [columns, columns], symmetric), rounding column j (by its index in the original
  /// order) with `round` when given. `module` names the weight in errors and warnings. Modules
  /// whose inputs are the same pass the same `shared` so that H is factored once.
  public func run(
    weight: [Float], rows: Int, columns: Int, hessian: [Float], module: String,
    shared: SharedFactorization? = nil, round: ((Int, UnsafeMutableBufferPointer<Float>) -> Void)?
  ) throws(SwiftCompressError) -> Result {
    precondition(weight.count == rows * columns && hessian.count == columns * columns)
    // One OpenBLAS thread: its multi-threaded factorizations sum in another order (the same
    // data gave different bytes at --jobs 1 and 2), and the output must not depend on --jobs.
    setBLASThreads(1)
    let prepared: Prepared
    if let shared {
      prepared = try shared.prepared(order: order, dampening: dampening) { () throws(SwiftCompressError) in
        try prepare(hessian, columns: columns, module: module)
      }
    } else {
      prepared = try prepare(hessian, columns: columns, module: module)
    }
    let (dead, perm, u) = (prepared.dead, prepared.perm, prepared.u)
    let warnings = prepared.raises.map { "\(module): \($0)" }
    let usedDampening = prepared.dampening
    // Wᵀ in visiting order: row c of `work` is column perm[c] of W.
    var work = [Float](repeating: 0, count: rows * columns)
    weight.withUnsafeBufferPointer { source in
      work.withUnsafeMutableBufferPointer { work in
        for c in 0..<columns where !dead[perm[c]] {
          let column = perm[c]
          let target = work.baseAddress! + c * rows
          for r in 0..<rows { target[r] = source[r * columns + column] }
        }
      }
    }

    var loss = 0.0
    var errors = [Float](repeating: 0, count: blockSize * rows)
    var masked = [Bool](repeating: false, count: blockSize * rows)
    var original = [Float](repeating: 0, count: rows)
    work.withUnsafeMutableBufferPointer { w in
      u.withUnsafeBufferPointer { u in
        errors.withUnsafeMutableBufferPointer { e in
          var start = 0
          while start < columns {
            let end = min(start + blockSize, columns)
            let count = end - start
            selectUnstructured(w, u, rows: rows, columns: columns, start: start, end: end, into: &masked)
            for i in 0..<count {
              let c = start + i
              let column = UnsafeMutableBufferPointer(rebasing: w[(c * rows)..<((c + 1) * rows)])
              if case .nOfM(let n, let m) = mask, i % m == 0 {
                selectNOfM(
                  w, u, rows: rows, columns: columns, column: c, blockOffset: i, n: n, m: m, limit: end,
                  into: &masked)
              }
              for r in 0..<rows { original[r] = column[r] }
              round?(perm[c], column)
              if mask != .none {
                for r in 0..<rows where masked[i * rows + r] { column[r] = 0 }
              }
              let d = u[c * columns + c]
              for r in 0..<rows {
                let err = (original[r] - column[r]) / d
                e[i * rows + r] = err
                loss += Double(err) * Double(err) / 2
              }
              // Inside the block: rank-one updates of the columns after c.
              if c + 1 < end {
                sck_feedback_rank1(
                  w.baseAddress! + (c + 1) * rows, rows, end - c - 1, e.baseAddress! + i * rows,
                  u.baseAddress! + c * columns + c + 1, rows)
              }
            }
            // After the block: W[:, end...] -= Err · U[start..<end, end...], as Wᵀ:
            // work[end...] (rest x rows) -= U[start..<end, end...]ᵀ (rest x count) · E (count x rows).
            let rest = columns - end
            if rest > 0 {
              var block = [Float](repeating: 0, count: rest * count)
              for i in 0..<count {
                for k in 0..<rest { block[k * count + i] = u[(start + i) * columns + end + k] }
              }
              block.withUnsafeBufferPointer { b in
                // Dimensions are those of a weight already in memory: within 32 bits.
                try? gemmRowMajor(
                  m: rest, n: rows, k: count, a: b.baseAddress!, lda: count, b: e.baseAddress!, ldb: rows,
                  transposeB: false, c: w.baseAddress! + end * rows, ldc: rows, alpha: -1, beta: 1)
              }
            }
            start = end
          }
        }
      }
    }
    var values = [Float](repeating: 0, count: rows * columns)
    for c in 0..<columns {
      let target = perm[c]
      for r in 0..<rows { values[r * columns + target] = work[c * rows + r] }
    }
    return Result(values: values, loss: loss, dampening: usedDampening, warnings: warnings)
  }

  /// Dead inputs, the visiting order and U of (H + λI)⁻¹ in that order, raising λ tenfold up
  /// to three times when H + λI is not positive definite.
  func prepare(_ hessian: [Float], columns: Int, module: String) throws(SwiftCompressError) -> Prepared {
    var dead = [Bool](repeating: false, count: columns)
    var diagonal = [Float](repeating: 0, count: columns)
    for j in 0..<columns {
      diagonal[j] = hessian[j * columns + j]
      if diagonal[j] == 0 {
        dead[j] = true
        diagonal[j] = 1
      }
    }
    var perm = Array(0..<columns)
    if order == .static {
      perm.sort { diagonal[$0] > diagonal[$1] || (diagonal[$0] == diagonal[$1] && $0 < $1) }
    }
    let mean = perm.reduce(0.0) { $0 + Double(diagonal[$1]) } / Double(max(columns, 1))
    var fraction = dampening
    var raises: [String] = []
    for attempt in 0...3 {
      // H in visiting order with dead inputs' H_jj = 1, dampened: one n x n buffer, factored in
      // place (rebuilt from `hessian` when the dampening must be raised).
      var h = [Float](repeating: 0, count: columns * columns)
      hessian.withUnsafeBufferPointer { source in
        h.withUnsafeMutableBufferPointer { h in
          for a in 0..<columns {
            let row = perm[a] * columns
            let target = h.baseAddress! + a * columns
            if order == .static {
              for b in 0..<columns { target[b] = source[row + perm[b]] }
            } else {
              for b in 0..<columns { target[b] = source[row + b] }
            }
            target[a] = diagonal[perm[a]] + Float(fraction * mean)
          }
        }
      }
      do {
        try upperCholeskyOfInverse(inPlace: &h, n: columns)
        return Prepared(dead: dead, perm: perm, u: h, dampening: fraction, raises: raises)
      } catch {
        guard attempt < 3 else {
          throw .invalidModule(
            name: module,
            reason:
              "its input second moment H is not positive definite even with dampening \(fraction) (\(error)); use more or longer calibration samples, a larger --dampening, or --ignore \(module)"
          )
        }
        let raised = fraction * 10
        raises.append("H + \(fraction)·mean(diag H)·I is not positive definite; dampening raised to \(raised)")
        fraction = raised
      }
    }
    fatalError("unreachable")
  }

  /// SparseGPT's unstructured mask of one block: the `fraction` of its weights with the
  /// smallest w²/U_jj² (ties: the reference takes every weight up to the threshold).
  private func selectUnstructured(
    _ w: UnsafeMutableBufferPointer<Float>, _ u: UnsafeBufferPointer<Float>, rows: Int, columns: Int, start: Int,
    end: Int, into masked: inout [Bool]
  ) {
    for i in masked.indices { masked[i] = false }
    guard case .unstructured(let fraction) = mask else { return }
    let count = end - start
    var scores = [Float](repeating: 0, count: count * rows)
    for i in 0..<count {
      let c = start + i
      let d = u[c * columns + c]
      for r in 0..<rows {
        let v = w[c * rows + r]
        scores[i * rows + r] = v * v / (d * d)
      }
    }
    let sorted = scores.sorted()
    let index = min(Int(Double(sorted.count) * fraction), sorted.count - 1)
    let threshold = sorted[index]
    for i in 0..<scores.count where scores[i] <= threshold { masked[i] = true }
  }

  /// SparseGPT's N:M mask of columns `column ..< column + m` (block offset `blockOffset`):
  /// per row the `n` smallest w²/U_jj², taken from the current (updated) weights.
  private func selectNOfM(
    _ w: UnsafeMutableBufferPointer<Float>, _ u: UnsafeBufferPointer<Float>, rows: Int, columns: Int, column: Int,
    blockOffset: Int, n: Int, m: Int, limit: Int, into masked: inout [Bool]
  ) {
    let width = min(m, limit - column)
    var scores = [(Float, Int)](repeating: (0, 0), count: width)
    for r in 0..<rows {
      for j in 0..<width {
        let c = column + j
        let d = u[c * columns + c]
        let v = w[c * rows + r]
        scores[j] = (v * v / (d * d), j)
      }
      scores.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
      for t in 0..<min(n, width) { masked[(blockOffset + scores[t].1) * rows + r] = true }
    }
  }
}

/// H's factorization shared by the modules that read the same input (q, k and v; gate and up):
/// the first module's run computes it, the others reuse it (the same bits as computing it again).
public final class SharedFactorization: @unchecked Sendable {
  private struct Key: Hashable {
    var order: ErrorFeedback.Order
    var dampening: Double
  }
  private let lock = NSLock()
  private var prepared: [Key: ErrorFeedback.Prepared] = [:]

  public init() {}

  func prepared(
    order: ErrorFeedback.Order, dampening: Double,
    _ make: () throws(SwiftCompressError) -> ErrorFeedback.Prepared
  ) throws(SwiftCompressError) -> ErrorFeedback.Prepared {
    lock.lock()
    defer { lock.unlock() }
    let key = Key(order: order, dampening: dampening)
    if let done = prepared[key] { return done }
    let made = try make()
    prepared[key] = made
    return made
  }
}
