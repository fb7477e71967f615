import Foundation

/// How the power iterations of ``randomizedSVD(_:rank:oversampling:powerIterations:normalizer:seed:)``
/// keep their basis well conditioned between the products with x and x^T.
public enum PowerIterationNormalizer: String, Codable, Sendable, CaseIterable {
  /// Thin QR (sgeqrf + sorgqr): an orthonormal basis (Halko et al. 2011, algorithm 4.4).
  case qr
  /// P L from the LU factorization with partial pivoting (sgetrf): the same span at a
  /// fraction of the cost (`luBasis`); scikit-learn's `randomized_svd` default.
  case lu
}

/// A randomized SVD of `x` at rank `k` (Halko, Martinsson and Tropp, *Finding structure
/// with randomness*, 2011, algorithms 4.3/4.4 and 5.1): a seeded Gaussian test matrix with
/// `oversampling` extra columns, `powerIterations` rounds of x (x^T Y), the basis
/// re-normalised by `normalizer` before each product, the last basis orthonormalised by
/// QR, then the SVD of the small projection.
public func randomizedSVD(
  _ x: Matrix, rank k: Int, oversampling: Int, powerIterations: Int, normalizer: PowerIterationNormalizer = .lu,
  seed: UInt64
) throws -> (
  u: Matrix, singularValues: [Float], vt: Matrix
) {
  let (m, n) = (x.rows, x.columns)
  let l = min(k + oversampling, min(m, n))
  var random = SeededGaussian(seed: seed)
  let omega = try Matrix(rows: n, columns: l, columnMajor: (0..<(n * l)).map { _ in Float(random.next()) })
  func normalized(_ a: Matrix) throws -> Matrix {
    switch normalizer {
    case .qr: try qr(a).q
    case .lu: try luBasis(a)
    }
  }
  var y = try Matrix(rows: m, columns: l)
  try gemm(x, omega, into: &y)
  for _ in 0..<powerIterations {
    var z = try Matrix(rows: n, columns: l)
    try gemm(x, try normalized(y), transposeA: true, into: &z)
    try gemm(x, try normalized(z), into: &y)
  }
  let q = try qr(y).q
  var small = try Matrix(rows: l, columns: n)
  try gemm(q, x, transposeA: true, into: &small)
  let s = try svd(small).truncated(rank: min(k, l))
  var u = try Matrix(rows: m, columns: s.u.columns)
  try gemm(q, s.u, into: &u)
  return (u, s.singularValues, s.vt)
}

/// Standard normal numbers from a seed: Box-Muller on SplitMix64 uniforms in (0, 1].
/// The same seed gives the same sequence on every machine.
public struct SeededGaussian: Sendable {
  private var state: UInt64

  public init(seed: UInt64) {
    state = seed
  }

  public mutating func uniform() -> Double {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return (Double(z >> 11) + 1) * 0x1p-53
  }

  public mutating func next() -> Double {
    (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform())
  }
}
