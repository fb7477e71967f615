import CheckpointIO
import Foundation
import LinearAlgebra

/// Least-squares refinement of a calibrated weight once its grid or its mask is fixed: the
/// values that minimise the module's output error on the calibration inputs,
///
///     E(V) = Σ_r (v_r - w_r)ᵀ H (v_r - w_r) = tr((V - W) H (V - W)ᵀ),  H = XᵀX + λI,
///
/// (λ = `dampening` x mean(diag XᵀX), the calibrated method's own) subject to what the method
/// decided. GPTQ and SparseGPT reach only an approximation of it: each column's error is moved
/// into the columns after it and never revisited, and SparseGPT's update is exact only for the
/// order it prunes in.
///
/// - **Mask fixed** (SparseGPT, Wanda): per row r the surviving weights S_r solve
///   H_SS v_S = (H w)_S exactly — the layer-wise reconstruction optimum for that mask (Boža,
///   "Fast and Optimal Weight Update for Pruned Large Language Models", arXiv 2401.02938, solves
///   the same problem by ADMM). Solved for all rows at once by Jacobi-preconditioned conjugate
///   gradients on the masked system, one sgemm per iteration (`solveMasked`).
/// - **Grid fixed** (GPTQ, every scheme): coordinate descent over the weights, each set to the
///   grid value nearest to its own one-dimensional optimum w_j − Σ_{k≠j} H_jk (v_k − w_k) / H_jj
///   with the others fixed, column by column (Behdin et al., "QuantEase: Optimization-based
///   Quantization for Language Models", arXiv 2309.01885). A one-dimensional quadratic's best
///   grid point is the nearest one to its minimiser, so no step increases E (`descend`).
/// - **Scales, integer grids**: with the integer codes c fixed, a row's group scales s minimise
///   E over the linear model v = Σ_g s_g c_g: a groups x groups system per row, the scales
///   rounded to their stored dtype (`refitScales`), alternated with the descent.
///
/// Every step is kept only when E (with the same H) goes down, so the refit never gives a larger
/// layer-wise error than the method's own result (tested).
public struct Refit: Sendable, Equatable {
  /// Whether calibrated methods refit after choosing their grid or mask (`--refit`).
  public enum Mode: String, Codable, Sendable, CaseIterable {
    /// The method's own values (llm-compressor's).
    case none
    /// The least-squares refit: exact for masks, coordinate descent (and integer scales) for grids.
    case ls
  }

  /// Coordinate-descent sweeps over the columns (at most; stops when a sweep changes nothing).
  public var sweeps: Int
  /// Alternations of integer scale refits and descents.
  public var rounds: Int
  /// λ = dampening x mean(diag H) added to H's diagonal.
  public var dampening: Double
  /// Conjugate-gradient iterations (at most) of the masked solve.
  public var iterations: Int
  /// The masked solve stops when every row's residual is below this fraction of its right-hand side.
  public var tolerance: Double
  /// Columns per lazy update of the descent.
  public var blockSize: Int

  /// Descent sweeps and scale rounds: 4 and 2 scored as well as 8 and 4 on the fixtures (equal or
  /// better on 7 of 8 scheme x model rows with mse, BERT W4A16 3e-6 lower) with fewer passes.
  public static let defaultSweeps = 4
  public static let defaultRounds = 2
  /// The masked solve's budget: one [columns x columns] by [columns x rows] sgemm per iteration,
  /// so a few dozen bound its cost on large modules (each iteration lowers E; on the fixtures it
  /// converges well within it).
  public static let defaultIterations = 32
  public static let defaultTolerance = 1e-5

  public init(
    dampening: Double = ErrorFeedback.defaultDampening, sweeps: Int = defaultSweeps, rounds: Int = defaultRounds,
    iterations: Int = defaultIterations, tolerance: Double = defaultTolerance, blockSize: Int = 128
  ) {
    self.dampening = dampening
    self.sweeps = sweeps
    self.rounds = rounds
    self.iterations = iterations
    self.tolerance = tolerance
    self.blockSize = blockSize
  }

  /// A refit's values (row-major [rows, columns]) with E before and after (the same H).
  public struct Result: Sendable {
    public var values: [Float]
    public var before: Double
    public var after: Double
  }

  /// H + λI as the refit uses it, and which inputs are dead (H_jj = 0: their weights are left as they are).
  func damped(_ hessian: [Float], columns: Int) -> (h: [Float], dead: [Bool]) {
    var h = hessian
    var dead = [Bool](repeating: false, count: columns)
    let mean = (0..<columns).reduce(0.0) { $0 + Double(h[$1 * columns + $1]) } / Double(max(columns, 1))
    for j in 0..<columns {
      if h[j * columns + j] <= 0 {
        dead[j] = true
        h[j * columns + j] = 1
      } else {
        h[j * columns + j] += Float(dampening * mean)
      }
    }
    return (h, dead)
  }

  /// E(values) = Σ_r (v_r − w_r)ᵀ (H + λI) (v_r − w_r) over the live inputs, in Double.
  public func error(original: [Float], values: [Float], rows: Int, columns: Int, hessian: [Float]) -> Double {
    let (h, dead) = damped(hessian, columns: columns)
    var d = transposed(values, rows: rows, columns: columns)
    let w = transposed(original, rows: rows, columns: columns)
    for c in 0..<columns {
      for r in 0..<rows { d[c * rows + r] = dead[c] ? 0 : d[c * rows + r] - w[c * rows + r] }
    }
    let g = product(h, d, rows: rows, columns: columns)
    return dot(d, g)
  }

  /// Coordinate descent of E over the grid `round` rounds to, from `start` (values already on it).
  public func descend(
    original: [Float], start: [Float], rows: Int, columns: Int, hessian: [Float],
    round: (Int, UnsafeMutableBufferPointer<Float>) -> Void
  ) -> Result {
    let (h, dead) = damped(hessian, columns: columns)
    let w = transposed(original, rows: rows, columns: columns)
    var v = transposed(start, rows: rows, columns: columns)
    var d = difference(v, w, dead: dead, rows: rows, columns: columns)
    var g = product(h, d, rows: rows, columns: columns)
    let before = dot(d, g)
    var column = [Float](repeating: 0, count: rows)
    var delta = [Float](repeating: 0, count: blockSize * rows)
    for _ in 0..<sweeps {
      var changed = false
      var block = 0
      while block < columns {
        let end = min(block + blockSize, columns)
        for i in 0..<(delta.count) { delta[i] = 0 }
        for j in block..<end where !dead[j] {
          let hjj = h[j * columns + j]
          for r in 0..<rows { column[r] = v[j * rows + r] - g[j * rows + r] / hjj }
          column.withUnsafeMutableBufferPointer { round(j, $0) }
          var moved = false
          let i = j - block
          for r in 0..<rows {
            let step = column[r] - v[j * rows + r]
            delta[i * rows + r] = step
            if step != 0 { moved = true }
          }
          guard moved else { continue }
          changed = true
          for r in 0..<rows { v[j * rows + r] = column[r] }
          // The block's later columns see the step now; the rest after the block (one sgemm).
          for k in (j + 1)..<max(j + 1, end) {
            let f = h[k * columns + j]
            if f == 0 { continue }
            for r in 0..<rows { g[k * rows + r] += f * delta[i * rows + r] }
          }
        }
        let rest = columns - end
        if rest > 0 {
          h.withUnsafeBufferPointer { hp in
            delta.withUnsafeBufferPointer { dp in
              g.withUnsafeMutableBufferPointer { gp in
                try? gemmRowMajor(
                  m: rest, n: rows, k: end - block, a: hp.baseAddress! + end * columns + block, lda: columns,
                  b: dp.baseAddress!, ldb: rows, transposeB: false, c: gp.baseAddress! + end * rows, ldc: rows,
                  alpha: 1, beta: 1)
              }
            }
          }
        }
        block = end
      }
      // Exactly again (the lazy updates skipped the columns before each block).
      d = difference(v, w, dead: dead, rows: rows, columns: columns)
      g = product(h, d, rows: rows, columns: columns)
      if !changed { break }
    }
    let after = dot(d, g)
    guard after < before else { return Result(values: start, before: before, after: before) }
    return Result(values: transposed(v, rows: columns, columns: rows), before: before, after: after)
  }

  /// The exact least-squares values of the weights `start` keeps (its non-zero entries; zeros
  /// stay zero): per row H_SS v_S = (H w)_S, by Jacobi-preconditioned conjugate gradients on
  /// every row at once, from `start`.
  public func solveMasked(original: [Float], start: [Float], rows: Int, columns: Int, hessian: [Float]) -> Result {
    let (h, dead) = damped(hessian, columns: columns)
    let w = transposed(original, rows: rows, columns: columns)
    var x = transposed(start, rows: rows, columns: columns)
    var keep = [Float](repeating: 0, count: rows * columns)
    for c in 0..<columns where !dead[c] {
      for r in 0..<rows where x[c * rows + r] != 0 { keep[c * rows + r] = 1 }
    }
    var d = difference(x, w, dead: dead, rows: rows, columns: columns)
    var g = product(h, d, rows: rows, columns: columns)
    let before = dot(d, g)
    // Residual of the masked system: R = keep ⊙ H (w − x) = −keep ⊙ g.
    var residual = [Float](repeating: 0, count: rows * columns)
    for i in 0..<residual.count { residual[i] = -keep[i] * g[i] }
    // Right-hand side (H w)_S per row, for the stopping rule.
    let hw = product(h, w, rows: rows, columns: columns)
    var scale = [Double](repeating: 0, count: rows)
    for c in 0..<columns {
      for r in 0..<rows {
        let b = Double(keep[c * rows + r] * hw[c * rows + r])
        scale[r] += b * b
      }
    }
    let diagonal = (0..<columns).map { h[$0 * columns + $0] }
    var z = [Float](repeating: 0, count: rows * columns)
    func precondition() {
      for c in 0..<columns {
        for r in 0..<rows { z[c * rows + r] = residual[c * rows + r] / diagonal[c] }
      }
    }
    precondition()
    var p = z
    var rz = rowDots(residual, z, rows: rows, columns: columns)
    for _ in 0..<iterations {
      let norms = rowDots(residual, residual, rows: rows, columns: columns)
      if (0..<rows).allSatisfy({ norms[$0] <= tolerance * tolerance * max(scale[$0], .leastNormalMagnitude) }) {
        break
      }
      var q = product(h, p, rows: rows, columns: columns)
      for i in 0..<q.count { q[i] *= keep[i] }
      let pq = rowDots(p, q, rows: rows, columns: columns)
      let alpha = (0..<rows).map { pq[$0] > 0 ? Float(rz[$0] / pq[$0]) : 0 }
      for c in 0..<columns {
        for r in 0..<rows {
          x[c * rows + r] += alpha[r] * p[c * rows + r]
          residual[c * rows + r] -= alpha[r] * q[c * rows + r]
        }
      }
      precondition()
      let next = rowDots(residual, z, rows: rows, columns: columns)
      let beta = (0..<rows).map { rz[$0] > 0 ? Float(next[$0] / rz[$0]) : 0 }
      for c in 0..<columns {
        for r in 0..<rows { p[c * rows + r] = z[c * rows + r] + beta[r] * p[c * rows + r] }
      }
      rz = next
    }
    for i in 0..<x.count where keep[i] == 0 { x[i] = 0 }
    d = difference(x, w, dead: dead, rows: rows, columns: columns)
    g = product(h, d, rows: rows, columns: columns)
    let after = dot(d, g)
    guard after < before, x.allSatisfy({ $0.isFinite }) else {
      return Result(values: start, before: before, after: before)
    }
    return Result(values: transposed(x, rows: columns, columns: rows), before: before, after: after)
  }

  // MARK: - Helpers (the work is on Wᵀ: one input column contiguous, as in ErrorFeedback)

  /// [rows, columns] row-major to [columns, rows].
  func transposed(_ a: [Float], rows: Int, columns: Int) -> [Float] {
    var t = [Float](repeating: 0, count: a.count)
    for r in 0..<rows {
      for c in 0..<columns { t[c * rows + r] = a[r * columns + c] }
    }
    return t
  }

  /// V − W on live inputs (zero on dead ones), transposed layout.
  func difference(_ v: [Float], _ w: [Float], dead: [Bool], rows: Int, columns: Int) -> [Float] {
    var d = [Float](repeating: 0, count: v.count)
    for c in 0..<columns where !dead[c] {
      for r in 0..<rows { d[c * rows + r] = v[c * rows + r] - w[c * rows + r] }
    }
    return d
  }

  /// H · A for A [columns, rows].
  func product(_ h: [Float], _ a: [Float], rows: Int, columns: Int) -> [Float] {
    var out = [Float](repeating: 0, count: rows * columns)
    h.withUnsafeBufferPointer { hp in
      a.withUnsafeBufferPointer { ap in
        out.withUnsafeMutableBufferPointer { op in
          try? gemmRowMajor(
            m: columns, n: rows, k: columns, a: hp.baseAddress!, lda: columns, b: ap.baseAddress!, ldb: rows,
            transposeB: false, c: op.baseAddress!, ldc: rows)
        }
      }
    }
    return out
  }

  func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
  }

  /// Per row r, Σ_c a[c, r] b[c, r] (transposed layout).
  func rowDots(_ a: [Float], _ b: [Float], rows: Int, columns: Int) -> [Double] {
    var s = [Double](repeating: 0, count: rows)
    for c in 0..<columns {
      for r in 0..<rows { s[r] += Double(a[c * rows + r]) * Double(b[c * rows + r]) }
    }
    return s
  }
}

// MARK: - Integer scales

extension IntegerGrid {
  /// The codes minus zero points (q − z) of values on the grid, row-major.
  func offsets(of values: [Float]) -> [Float] {
    var out = [Float](repeating: 0, count: values.count)
    let (rows, columns, group) = (storage.rows, storage.columns, storage.group)
    storage.parameters.withUnsafeBufferPointer { p in
      for r in 0..<rows {
        for c in 0..<columns {
          let parameter = p[(c / group) * rows + r]
          let q = Float(Int(rule.code(values[r * columns + c], scale: parameter.scale, zeroPoint: parameter.zeroPoint)))
          out[r * columns + c] = q - parameter.zeroPoint
        }
      }
    }
    return out
  }

  /// The scales, row-major [rows, groups].
  var scales: [Float] {
    let groups = storage.columns / storage.group
    var out = [Float](repeating: 0, count: storage.rows * groups)
    for g in 0..<groups {
      for r in 0..<storage.rows { out[r * groups + g] = storage.parameters[g * storage.rows + r].scale }
    }
    return out
  }

  /// The same grid with `scales` (row-major [rows, groups], representable in `dtype`), and its
  /// stored scale tensor rewritten.
  func with(scales: [Float], dtype: DType) -> IntegerGrid {
    let (rows, groups) = (storage.rows, storage.columns / storage.group)
    var parameters = storage.parameters
    for g in 0..<groups {
      for r in 0..<rows { parameters[g * rows + r].scale = scales[r * groups + g] }
    }
    var companions = storage.companions
    companions[0] = DenseCodec.encode(scales, as: dtype)
    return IntegerGrid(
      storage: GridStorage(
        name: storage.name, rows: rows, columns: storage.columns, group: storage.group, parameters: parameters,
        companions: companions),
      rule: rule, bits: bits)
  }

  /// The values of codes `offsets` (q − z, row-major) on this grid.
  func values(offsets: [Float]) -> [Float] {
    var out = [Float](repeating: 0, count: offsets.count)
    let (rows, columns, group) = (storage.rows, storage.columns, storage.group)
    for r in 0..<rows {
      for c in 0..<columns {
        let p = storage.parameters[(c / group) * rows + r]
        out[r * columns + c] = rule.value(
          offsets[r * columns + c] + p.zeroPoint, scale: p.scale, zeroPoint: p.zeroPoint)
      }
    }
    return out
  }
}

extension GridStorage {
  init(name: String, rows: Int, columns: Int, group: Int, parameters: [Parameter], companions: [[UInt8]]) {
    self.name = name
    self.rows = rows
    self.columns = columns
    self.group = group
    self.parameters = parameters
    self.companions = companions
  }
}

extension Refit {
  /// With the codes of `values` fixed, each row's group scales minimising E: (AᵀHA) s = AᵀHw with
  /// A[j, g] = c_j for the inputs j of group g, solved per row (groups x groups, Double), rounded
  /// to `dtype`; a row keeps its old scales when the system is singular or a scale would not be
  /// positive and finite. Returns the new grid and values (nil when nothing changed).
  func refitScales(
    grid: IntegerGrid, original: [Float], values: [Float], hessian: [Float], dtype: DType
  ) -> (IntegerGrid, [Float])? {
    let (rows, columns, group) = (grid.rows, grid.columns, grid.storage.group)
    let groups = columns / group
    let (h, dead) = damped(hessian, columns: columns)
    let codes = grid.offsets(of: values)
    var ct = transposed(codes, rows: rows, columns: columns)
    for c in 0..<columns where dead[c] {
      for r in 0..<rows { ct[c * rows + r] = 0 }
    }
    let w = transposed(original, rows: rows, columns: columns)
    var wl = w
    for c in 0..<columns where dead[c] {
      for r in 0..<rows { wl[c * rows + r] = 0 }
    }
    let hw = product(h, wl, rows: rows, columns: columns)
    // Per row the normal equations M s = b, M[g, k] = Σ_{j∈g} c_j (H[:, k] C_k)_j, b[g] = Σ_{j∈g} c_j (H w)_j,
    // one group k's H[:, k] C_k ([columns, rows]) at a time.
    var normal = [Double](repeating: 0, count: rows * groups * groups)
    var right = [Double](repeating: 0, count: rows * groups)
    for r in 0..<rows {
      for j in 0..<columns {
        let c = Double(ct[j * rows + r])
        if c != 0 { right[r * groups + j / group] += c * Double(hw[j * rows + r]) }
      }
    }
    var u = [Float](repeating: 0, count: rows * columns)
    for k in 0..<groups {
      h.withUnsafeBufferPointer { hp in
        ct.withUnsafeBufferPointer { cp in
          u.withUnsafeMutableBufferPointer { up in
            try? gemmRowMajor(
              m: columns, n: rows, k: group, a: hp.baseAddress! + k * group, lda: columns,
              b: cp.baseAddress! + k * group * rows, ldb: rows, transposeB: false, c: up.baseAddress!, ldc: rows)
          }
        }
      }
      for r in 0..<rows {
        for j in 0..<columns {
          let c = Double(ct[j * rows + r])
          if c != 0 { normal[(r * groups + j / group) * groups + k] += c * Double(u[j * rows + r]) }
        }
      }
    }
    var scales = grid.scales
    var changed = false
    for r in 0..<rows {
      let m = Array(normal[(r * groups * groups)..<((r + 1) * groups * groups)])
      let b = Array(right[(r * groups)..<((r + 1) * groups)])
      guard let s = Self.solveSPD(m, b, n: groups) else { continue }
      var row = Array(scales[(r * groups)..<((r + 1) * groups)])
      var valid = true
      for g in 0..<groups where m[g * groups + g] > 0 {
        let rounded = DTypeRounding(dtype)(Float(s[g]))
        guard rounded.isFinite, rounded > 0 else {
          valid = false
          break
        }
        row[g] = rounded
      }
      guard valid else { continue }
      for g in 0..<groups where scales[r * groups + g] != row[g] {
        scales[r * groups + g] = row[g]
        changed = true
      }
    }
    guard changed else { return nil }
    let refitted = grid.with(scales: scales, dtype: dtype)
    return (refitted, refitted.values(offsets: codes))
  }

  /// Solves the symmetric positive definite n x n system (Cholesky in Double); nil when it is not.
  /// Rows and columns with a zero diagonal (a group whose codes are all zero) are left out (0).
  static func solveSPD(_ a: [Double], _ b: [Double], n: Int) -> [Double]? {
    let live = (0..<n).filter { a[$0 * n + $0] > 0 }
    let k = live.count
    guard k > 0 else { return nil }
    var l = [Double](repeating: 0, count: k * k)
    for i in 0..<k {
      for j in 0...i {
        var sum = a[live[i] * n + live[j]]
        for t in 0..<j { sum -= l[i * k + t] * l[j * k + t] }
        if i == j {
          guard sum > 0 else { return nil }
          l[i * k + i] = sum.squareRoot()
        } else {
          l[i * k + j] = sum / l[j * k + j]
        }
      }
    }
    var y = [Double](repeating: 0, count: k)
    for i in 0..<k {
      var sum = b[live[i]]
      for t in 0..<i { sum -= l[i * k + t] * y[t] }
      y[i] = sum / l[i * k + i]
    }
    var x = [Double](repeating: 0, count: k)
    for i in stride(from: k - 1, through: 0, by: -1) {
      var sum = y[i]
      for t in (i + 1)..<k { sum -= l[t * k + i] * x[t] }
      x[i] = sum / l[i * k + i]
    }
    var out = [Double](repeating: 0, count: n)
    for (i, j) in live.enumerated() { out[j] = x[i] }
    return out
  }

  /// GPTQ's refit: descent on `grid`, and for integer grids alternations of scale refits and
  /// descents, each kept only when E goes down. Returns the grid the values lie on and the values.
  func refine(
    grid: any QuantizationGrid, original: [Float], start: [Float], hessian: [Float], dtype: DType
  ) -> (grid: any QuantizationGrid, result: Result) {
    let (rows, columns) = (grid.rows, grid.columns)
    var current = descend(
      original: original, start: start, rows: rows, columns: columns, hessian: hessian, round: grid.round)
    let first = current.before
    guard var integer = grid as? IntegerGrid else { return (grid, current) }
    for _ in 0..<rounds {
      guard
        let (refitted, values) = refitScales(
          grid: integer, original: original, values: current.values, hessian: hessian, dtype: dtype)
      else { break }
      let scaled = error(original: original, values: values, rows: rows, columns: columns, hessian: hessian)
      guard scaled < current.after else { break }
      let next = descend(
        original: original, start: values, rows: rows, columns: columns, hessian: hessian, round: refitted.round)
      integer = refitted
      current = Result(values: next.values, before: first, after: min(scaled, next.after))
    }
    current.before = first
    return (integer, current)
  }
}
