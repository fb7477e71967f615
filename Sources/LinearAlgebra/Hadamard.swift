import Foundation

/// Hadamard matrices and the seeded orthogonal rotations built from them (QuaRot,
/// arXiv 2404.00456; SpinQuant, arXiv 2405.16406).
///
/// `H_n` is Sylvester's construction, `H_1 = [1]`, `H_2n = [[H_n, H_n], [H_n, -H_n]]`
/// (entry (i, j) is `(-1)^popcount(i & j)`, the order of `scipy.linalg.hadamard`), scaled
/// by `1/sqrt(n)` so that it is orthogonal and symmetric: `H_n H_n = I`.
public enum Hadamard {
  /// Whether `n` is a power of two (1 included).
  public static func isPowerOfTwo(_ n: Int) -> Bool { n > 0 && n & (n - 1) == 0 }

  /// The normalised Sylvester Hadamard matrix of order `n`, a power of two.
  public static func matrix(_ n: Int) throws(LinearAlgebraError) -> Matrix {
    guard isPowerOfTwo(n) else {
      throw .invalidArgument(operation: "Hadamard.matrix", details: "order \(n) is not a power of two")
    }
    let scale = 1 / Float(n).squareRoot()
    var storage = [Float](repeating: 0, count: n * n)
    for i in 0..<n {
      for j in 0..<n { storage[j * n + i] = (i & j).nonzeroBitCount % 2 == 0 ? scale : -scale }
    }
    return Matrix(uncheckedRows: n, columns: n, storage: storage)
  }

  /// The fast Walsh-Hadamard transform in place, `x <- H_n x`, normalised, in
  /// `n log2 n` additions: `x` is the `n` values `values[0], values[stride], ...`
  /// (`stride` 1 for a contiguous vector, `m` for a column of a row-major `n x m` block).
  /// Since `H_n` is symmetric, the same call computes a row vector's `x H_n`.
  public static func transform(_ values: UnsafeMutablePointer<Float>, length n: Int, stride: Int = 1) {
    precondition(isPowerOfTwo(n), "Hadamard.transform: length \(n) is not a power of two")
    var half = 1
    while half < n {
      var start = 0
      while start < n {
        for j in start..<(start + half) {
          let a = values[j * stride]
          let b = values[(j + half) * stride]
          values[j * stride] = a + b
          values[(j + half) * stride] = a - b
        }
        start += 2 * half
      }
      half *= 2
    }
    let scale = 1 / Float(n).squareRoot()
    for j in 0..<n { values[j * stride] *= scale }
  }

  /// `transform` of each of the `values.count / n` consecutive vectors of `values`.
  public static func transformRows(_ values: inout [Float], length n: Int) {
    precondition(n > 0 && values.count % n == 0, "Hadamard.transformRows: \(values.count) values are not rows of \(n)")
    values.withUnsafeMutableBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return }
      for row in 0..<(buffer.count / n) { transform(base + row * n, length: n) }
    }
  }
}

/// A seeded orthogonal `n x n` rotation, a "randomised Hadamard" matrix.
///
/// With `n = 2^k * m`, `m` odd:
///
///     Q = (H_{2^k} ⊗ R_m) · diag(s)
///
/// `H_{2^k}` is the normalised Sylvester matrix, `R_m` a random orthogonal `m x m` matrix
/// (the Q factor of the QR decomposition of a matrix of standard normal numbers, its columns'
/// signs fixed so that R's diagonal is positive, which makes it Haar-distributed; `R_1 = [1]`),
/// and `s` a vector of random signs. For a power of two this is QuaRot's `H · diag(±1)`; for
/// other sizes (896 = 128 · 7, 3584 = 512 · 7) the odd factor is a dense random rotation, as
/// QuaRot's `H_{2^k} ⊗ H_m` uses a known Hadamard matrix of order m, which needs not exist here.
///
/// The random numbers come from `SeededGaussian(seed:)` (SplitMix64), in this order: `m * m`
/// normal numbers filling the Gaussian matrix column by column (only when `m > 1`), then `n`
/// uniforms, `s_i = -1` when the i-th is below 1/2. The same seed gives the same matrix on
/// every machine.
///
/// `Q` is applied to a row vector in `O(n (log 2^k + m))` without being formed: `x Q` views
/// `x` as a row-major `2^k x m` block `X` and computes `(H X R_m)` (then the signs), since
/// `H` is symmetric.
public struct RandomizedHadamard: Sendable, Equatable {
  /// The order `n`.
  public let size: Int
  /// `2^k`, the largest power of two dividing `size`.
  public let powerOfTwo: Int
  /// The odd factor `m`, and `R_m` (row-major, `m x m`; empty when `m == 1`).
  public let oddFactor: Int
  public let oddRotation: [Float]
  /// The signs `s` (±1).
  public let signs: [Float]
  public let seed: UInt64

  public init(size n: Int, seed: UInt64) throws(LinearAlgebraError) {
    guard n > 0 else {
      throw .invalidArgument(operation: "RandomizedHadamard", details: "order \(n) must be positive")
    }
    size = n
    self.seed = seed
    let power = 1 << n.trailingZeroBitCount
    powerOfTwo = power
    oddFactor = n / power
    var random = SeededGaussian(seed: seed)
    let m = oddFactor
    if m > 1 {
      var gaussian = [Float](repeating: 0, count: m * m)  // column-major
      for i in gaussian.indices { gaussian[i] = Float(random.next()) }
      let factors = try qr(Matrix(uncheckedRows: m, columns: m, storage: gaussian))
      var rotation = [Float](repeating: 0, count: m * m)
      for column in 0..<m {
        let sign: Float = factors.r[column, column] < 0 ? -1 : 1
        for row in 0..<m { rotation[row * m + column] = sign * factors.q[row, column] }
      }
      oddRotation = rotation
    } else {
      oddRotation = []
    }
    signs = (0..<n).map { _ in random.uniform() < 0.5 ? -1 : 1 }
  }

  /// `x <- x Q` for each of `count` rows of `size` values, `rowStride` apart.
  public func applyRight(to rows: UnsafeMutablePointer<Float>, count: Int, rowStride: Int? = nil) {
    let n = size
    let m = oddFactor
    let stride = rowStride ?? n
    var scratch = [Float](repeating: 0, count: m)
    for r in 0..<count {
      let x = rows + r * stride
      if m > 1 {
        // X R_m, row by row of the 2^k x m block.
        for a in 0..<powerOfTwo {
          let block = x + a * m
          for d in 0..<m {
            var sum: Float = 0
            for b in 0..<m { sum += block[b] * oddRotation[b * m + d] }
            scratch[d] = sum
          }
          for d in 0..<m { block[d] = scratch[d] }
        }
      }
      // H (X R_m): a transform down each of the m columns.
      for d in 0..<m { Hadamard.transform(x + d, length: powerOfTwo, stride: m) }
      for i in 0..<n { x[i] *= signs[i] }
    }
  }

  /// `x <- x Q` for consecutive rows of `size` values.
  public func applyRight(to values: inout [Float]) {
    precondition(values.count % size == 0, "RandomizedHadamard: \(values.count) values are not rows of \(size)")
    values.withUnsafeMutableBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return }
      applyRight(to: base, count: buffer.count / size)
    }
  }

  /// `Q` itself (row i is `e_i Q`), for tests and small sizes.
  public func matrix() -> Matrix {
    var rows = [Float](repeating: 0, count: size * size)
    for i in 0..<size { rows[i * size + i] = 1 }
    applyRight(to: &rows)
    return Matrix(uncheckedRows: size, columns: size, storage: Matrix.transposeOfRowMajorUnchecked(rows, size))
  }
}

extension Matrix {
  /// Column-major storage of a square row-major array.
  fileprivate static func transposeOfRowMajorUnchecked(_ rowMajor: [Float], _ n: Int) -> [Float] {
    var storage = [Float](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { storage[j * n + i] = rowMajor[i * n + j] } }
    return storage
  }
}
