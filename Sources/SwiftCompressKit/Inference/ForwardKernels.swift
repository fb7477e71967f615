import CKernels
import CheckpointIO
import Foundation
import LinearAlgebra

/// The forward pass's arithmetic on rows of Float32 activations (row-major, one row a token):
/// linear layers through one `cblas_sgemm` over all rows, attention per sequence and head with
/// sgemm, and the elementwise work (norms, RoPE, activations, softmax) in tight loops.
enum ForwardKernels {
  /// `y = x Wᵀ (+ bias)`: `x` is rows x `inputs`, `weight` is `outputs` x `inputs` (a linear
  /// layer's weight as stored), `y` rows x `outputs`. The output columns are split into blocks
  /// (at most 8, of at least 192 columns: each block packs `x` again, 16 blocks cost 10% at one
  /// thread) that the workers (`Parallel.jobs`) share, each block
  /// one single-threaded `cblas_sgemm` over all rows: the weight is read once, no BLAS threads
  /// wait on each other, and the blocks depend on the shape alone, so the result is the same
  /// bits at any job count.
  static func linear(
    _ x: [Float], rows: Int, inputs: Int, weight: [Float], bias: [Float]?, outputs: Int, module: String
  ) throws(SwiftCompressError) -> [Float] {
    try weight.withUnsafeBufferPointer { (pw) throws(SwiftCompressError) in
      try linear(x, rows: rows, inputs: inputs, weight: pw, bias: bias, outputs: outputs, module: module)
    }
  }

  /// `linear` with the weight as a buffer (a view of the mapped checkpoint, or decoded values).
  static func linear(
    _ x: [Float], rows: Int, inputs: Int, weight pw: UnsafeBufferPointer<Float>, bias: [Float]?, outputs: Int,
    module: String
  ) throws(SwiftCompressError) -> [Float] {
    guard rows <= Int(Int32.max), inputs <= Int(Int32.max), outputs <= Int(Int32.max) else {
      throw .invalidModule(name: module, reason: "is too large for BLAS (\(rows) x \(inputs) x \(outputs))")
    }
    if rows == 0 { return [] }
    let block = max(192, ((outputs + 7) / 8 + 63) / 64 * 64)
    let parts = (outputs + block - 1) / block
    return [Float](unsafeUninitializedCapacity: rows * outputs) { py, count in
      x.withUnsafeBufferPointer { px in
        nonisolated(unsafe) let (a, b, c) = (px.baseAddress!, pw.baseAddress!, py.baseAddress!)
        Parallel.perform(iterations: parts) { part in
          let first = part * block
          let columns = min(block, outputs - first)
          guard columns > 0 else { return }
          // Sizes checked above: gemmRowMajor cannot throw.
          try? gemmRowMajor(
            m: rows, n: columns, k: inputs, a: a, lda: inputs, b: b + first * inputs, ldb: inputs,
            transposeB: true, c: c + first, ldc: outputs)
          if let bias {
            for r in 0..<rows {
              let row = c + r * outputs
              for j in first..<(first + columns) { row[j] += bias[j] }
            }
          }
        }
      }
      count = rows * outputs
    }
  }

  /// RMSNorm of every `width`-wide group of `values` in place: `x / sqrt(mean(x²) + eps) * weight`
  /// (transformers' LlamaRMSNorm in float32; Qwen3's q/k norms use it per head with `width` the
  /// head size).
  static func rmsNorm(_ values: inout [Float], width: Int, weight: [Float], epsilon: Float) {
    let groups = values.count / width
    values.withUnsafeMutableBufferPointer { pv in
      weight.withUnsafeBufferPointer { pw in
        nonisolated(unsafe) let (v, w) = (pv.baseAddress!, pw.baseAddress!)
        blocks(groups, minimum: 64) { range in
          for g in range {
            let x = v + g * width
            var sum: Float = 0
            for j in 0..<width { sum += x[j] * x[j] }
            let scale = 1 / (sum / Float(width) + epsilon).squareRoot()
            for j in 0..<width { x[j] = w[j] * (x[j] * scale) }
          }
        }
      }
    }
  }

  /// Runs `body` over 0..<count in blocks of at least `minimum` items on the workers
  /// (`Parallel.jobs`); elementwise work, so the blocks change no result.
  static func blocks(_ count: Int, minimum: Int, _ body: (Range<Int>) -> Void) {
    let parts = max(1, min(4 * Parallel.jobs, count / max(1, minimum)))
    let size = (count + parts - 1) / parts
    Parallel.perform(iterations: parts) { part in
      let start = part * size
      let end = min(count, start + size)
      if start < end { body(start..<end) }
    }
  }

  /// LayerNorm of every row in place: `(x - mean) / sqrt(var + eps) * weight + bias` (biased variance).
  static func layerNorm(_ values: inout [Float], width: Int, weight: [Float], bias: [Float], epsilon: Float) {
    let rows = values.count / width
    values.withUnsafeMutableBufferPointer { pv in
      weight.withUnsafeBufferPointer { pw in
        bias.withUnsafeBufferPointer { pb in
          for r in 0..<rows {
            let x = pv.baseAddress! + r * width
            var sum: Float = 0
            for j in 0..<width { sum += x[j] }
            let mean = sum / Float(width)
            var squares: Float = 0
            for j in 0..<width {
              let d = x[j] - mean
              squares += d * d
            }
            let scale = 1 / (squares / Float(width) + epsilon).squareRoot()
            for j in 0..<width { x[j] = (x[j] - mean) * scale * pw[j] + pb[j] }
          }
        }
      }
    }
  }

  /// `a += b`, elementwise.
  static func add(_ a: inout [Float], _ b: [Float]) {
    a.withUnsafeMutableBufferPointer { pa in
      b.withUnsafeBufferPointer { pb in
        for i in 0..<pa.count { pa[i] += pb[i] }
      }
    }
  }

  /// The activation of `values` in place.
  static func activate(_ values: inout [Float], _ activation: Activation) {
    values.withUnsafeMutableBufferPointer { pv in
      nonisolated(unsafe) let v = pv.baseAddress!
      blocks(pv.count, minimum: 16384) { range in activate(v, range, activation) }
    }
  }

  /// `gate = act(gate) * up`, in place: what a gated MLP's down projection reads.
  static func gated(_ gate: inout [Float], up: [Float], _ activation: Activation) {
    gate.withUnsafeMutableBufferPointer { pg in
      up.withUnsafeBufferPointer { pu in
        nonisolated(unsafe) let (g, u) = (pg.baseAddress!, pu.baseAddress!)
        blocks(pg.count, minimum: 16384) { range in
          if activation == .silu {
            sck_silu_f32(g + range.lowerBound, u + range.lowerBound, range.count)  // Vectorised exp.
            return
          }
          activate(g, range, activation)
          for i in range { g[i] *= u[i] }
        }
      }
    }
  }

  private static func activate(_ v: UnsafeMutablePointer<Float>, _ range: Range<Int>, _ activation: Activation) {
    switch activation {
    case .silu:
      sck_silu_f32(v + range.lowerBound, nil, range.count)
    case .gelu:
      for i in range { v[i] = 0.5 * v[i] * (1 + erff(v[i] * 0.70710678118654752)) }
    case .geluTanh:
      for i in range {
        let x = v[i]
        v[i] = 0.5 * x * (1 + tanhf(0.79788456080286536 * (x + 0.044715 * x * x * x)))
      }
    case .relu:
      for i in range { v[i] = max(v[i], 0) }
    }
  }

  /// Rotary position embedding in place on the `heads` heads of `headDim` values of each row of
  /// `values` (rows x heads·headDim): a row at position p rotates value i with value i + d/2 by
  /// the angle p·invFreq[i] (transformers' `rotate_half` layout).
  static func rotary(
    _ values: inout [Float], heads: Int, headDim: Int, positions: [Int], table: RotaryTable
  ) {
    let half = headDim / 2
    let width = heads * headDim
    values.withUnsafeMutableBufferPointer { pv in
      table.cos.withUnsafeBufferPointer { pc in
        table.sin.withUnsafeBufferPointer { ps in
          nonisolated(unsafe) let (v, cosines, sines) = (pv.baseAddress!, pc.baseAddress!, ps.baseAddress!)
          blocks(positions.count, minimum: 16) { rows in
            for r in rows {
              let c = cosines + positions[r] * half
              let s = sines + positions[r] * half
              for h in 0..<heads {
                let x = v + r * width + h * headDim
                for i in 0..<half {
                  let a = x[i]
                  let b = x[i + half]
                  x[i] = a * c[i] - b * s[i]
                  x[i + half] = b * c[i] + a * s[i]
                }
              }
            }
          }
        }
      }
    }
  }

  /// Scaled dot-product attention of every sequence (`offsets`) and query head of a batch into
  /// `context` (rows x heads·headDim): softmax(q kᵀ / sqrt(d) + mask) v, where query head h reads
  /// key-value head h / (heads / kvHeads) (`q` is rows x heads·headDim, `k` and `v` rows x
  /// kvHeads·headDim). `causal` hides later tokens; `window` (Mistral's sliding window) hides
  /// keys `window` or more positions back. The (sequence, head) pairs run on `Parallel.jobs`
  /// workers, each with the scores of one head (n x n) as its only scratch.
  static func attention(
    q: [Float], k: [Float], v: [Float], into context: inout [Float], offsets: [Int], heads: Int, kvHeads: Int,
    headDim: Int, causal: Bool, window: Int?
  ) {
    let sequences = offsets.count - 1
    q.withUnsafeBufferPointer { pq in
      k.withUnsafeBufferPointer { pk in
        v.withUnsafeBufferPointer { pv in
          context.withUnsafeMutableBufferPointer { pc in
            nonisolated(unsafe) let (q, k, v, out) = (
              pq.baseAddress!, pk.baseAddress!, pv.baseAddress!, pc.baseAddress!
            )
            Parallel.perform(iterations: sequences * heads) { pair in
              let (s, h) = (pair / heads, pair % heads)
              let (start, n) = (offsets[s], offsets[s + 1] - offsets[s])
              guard n > 0 else { return }
              let scores = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
              defer { scores.deallocate() }
              head(
                q: q + start * heads * headDim + h * headDim, k: k + start * kvHeads * headDim,
                v: v + start * kvHeads * headDim, out: out + start * heads * headDim + h * headDim, length: n,
                kvHead: h / (heads / kvHeads), qStride: heads * headDim, kvStride: kvHeads * headDim,
                headDim: headDim, causal: causal, window: window, scores: scores)
            }
          }
        }
      }
    }
  }

  /// One head of one sequence: `q` and `out` point at the head's first column, `k` and `v` at the
  /// sequence's first row. Causal attention runs in blocks of 64 queries, each scored only against
  /// the keys up to its last query (the blocks depend on the length alone).
  private static func head(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
    length n: Int, kvHead: Int, qStride: Int, kvStride: Int, headDim: Int, causal: Bool, window: Int?,
    scores: UnsafeMutablePointer<Float>
  ) {
    let scale = 1 / Float(headDim).squareRoot()
    let block = causal ? 64 : n
    var start = 0
    while start < n {
      let end = min(n, start + block)
      let keys = causal ? end : n
      // Sizes fit in Int32: the linear layers that made q, k and v checked them.
      try? gemmRowMajor(
        m: end - start, n: keys, k: headDim, a: q + start * qStride, lda: qStride, b: k + kvHead * headDim,
        ldb: kvStride, transposeB: true, c: scores, ldc: keys, alpha: scale)
      for i in start..<end {
        let row = scores + (i - start) * keys
        let last = causal ? i : n - 1
        let first = window.map { max(0, i - $0 + 1) } ?? 0
        sck_softmax_f32(row + first, last - first + 1)  // Vectorised exp.
        for j in 0..<first { row[j] = 0 }
        if last + 1 < keys { for j in (last + 1)..<keys { row[j] = 0 } }
      }
      try? gemmRowMajor(
        m: end - start, n: headDim, k: keys, a: scores, lda: keys, b: v + kvHead * headDim, ldb: kvStride,
        transposeB: false, c: out + start * qStride, ldc: qStride)
      start = end
    }
  }
}

/// The MLP activations the forward pass computes.
enum Activation: String, Sendable {
  case silu
  /// Exact GELU (erf), transformers' "gelu".
  case gelu
  /// The tanh approximation ("gelu_new", "gelu_pytorch_tanh").
  case geluTanh
  case relu

  /// config.json's `hidden_act`, nil when unsupported.
  init?(configName: String) {
    switch configName {
    case "silu", "swish": self = .silu
    case "gelu": self = .gelu
    case "gelu_new", "gelu_pytorch_tanh": self = .geluTanh
    case "relu": self = .relu
    default: return nil
    }
  }

  static let supportedNames = ["silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"]
}

/// cos and sin of every position's rotary angles: `positions` rows of headDim/2 values.
struct RotaryTable: Sendable {
  var cos: [Float]
  var sin: [Float]
}
