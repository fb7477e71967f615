import CKernels
import CheckpointIO
import Foundation

/// The error a transform cost, comparing the original weights W with what the
/// output stands for, W'.
public struct ErrorMetrics: Sendable, Equatable, Codable {
  /// ||W - W'||_F / ||W||_F (0 when both are zero).
  public var relativeFrobeniusError: Double
  /// 10 log10(||W||^2 / ||W - W'||^2) in dB; nil when the error is exactly zero
  /// (infinite SQNR).
  public var sqnrDB: Double?
  /// <W, W'> / (||W|| ||W'||) (1 when both are zero).
  public var cosineSimilarity: Double
  /// max |W - W'|.
  public var maxAbsError: Double
  /// Positions where W or W' is NaN or infinite (left out of the other figures).
  public var nonFiniteCount: Int
  /// ||W||_F^2, the signal energy the figures were computed from; nil for `exact`
  /// (which is not measured). With `errorEnergy` it lets reports aggregate the error
  /// of several tensors (per layer, say) as sqrt(sum of errors / sum of energies).
  public var referenceEnergy: Double?
  /// ||W - W'||_F^2; nil exactly when `referenceEnergy` is.
  public var errorEnergy: Double?

  enum CodingKeys: String, CodingKey {
    case relativeFrobeniusError = "relative_frobenius_error"
    case sqnrDB = "sqnr_db"
    case cosineSimilarity = "cosine_similarity"
    case maxAbsError = "max_abs_error"
    case nonFiniteCount = "non_finite_count"
    case referenceEnergy = "reference_energy"
    case errorEnergy = "error_energy"
  }

  /// The metrics of an exact transform.
  public static let exact = ErrorMetrics(
    relativeFrobeniusError: 0, sqnrDB: nil, cosineSimilarity: 1, maxAbsError: 0, nonFiniteCount: 0)

  public init(
    relativeFrobeniusError: Double, sqnrDB: Double?, cosineSimilarity: Double, maxAbsError: Double, nonFiniteCount: Int,
    referenceEnergy: Double? = nil, errorEnergy: Double? = nil
  ) {
    self.relativeFrobeniusError = relativeFrobeniusError
    self.sqnrDB = sqnrDB
    self.cosineSimilarity = cosineSimilarity
    self.maxAbsError = maxAbsError
    self.nonFiniteCount = nonFiniteCount
    self.referenceEnergy = referenceEnergy
    self.errorEnergy = errorEnergy
  }

  // Encode a nil SQNR as an explicit null, so the key is always present.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(relativeFrobeniusError, forKey: .relativeFrobeniusError)
    try container.encode(sqnrDB, forKey: .sqnrDB)
    try container.encode(cosineSimilarity, forKey: .cosineSimilarity)
    try container.encode(maxAbsError, forKey: .maxAbsError)
    try container.encode(nonFiniteCount, forKey: .nonFiniteCount)
    try container.encodeIfPresent(referenceEnergy, forKey: .referenceEnergy)
    try container.encodeIfPresent(errorEnergy, forKey: .errorEnergy)
  }
}

/// Sums of squares and products, accumulated chunk by chunk and turned into
/// `ErrorMetrics` at the end. Adding the same chunks in the same order gives the
/// same bits.
public struct ErrorAccumulator: Sendable, Equatable {
  public var referenceSquares = 0.0
  public var reconstructionSquares = 0.0
  public var errorSquares = 0.0
  public var dot = 0.0
  public var maxAbsError: Float = 0
  public var nonFinite = 0

  public init() {}

  /// Adds `reference` vs `reconstruction` (same length).
  public mutating func add(reference: UnsafeBufferPointer<Float>, reconstruction: UnsafeBufferPointer<Float>) {
    precondition(reference.count == reconstruction.count, "reference and reconstruction differ in length")
    guard let r = reference.baseAddress, let o = reconstruction.baseAddress else { return }
    var stats = sck_error_stats()
    sck_error_stats_f32(r, o, reference.count, &stats)
    add(stats)
  }

  /// Adds the totals of another accumulator (or kernel call).
  mutating func add(_ stats: sck_error_stats) {
    referenceSquares += stats.ref_sq
    reconstructionSquares += stats.out_sq
    errorSquares += stats.err_sq
    dot += stats.dot
    maxAbsError = max(maxAbsError, stats.max_abs_err)
    nonFinite += Int(stats.nonfinite)
  }

  public mutating func merge(_ other: ErrorAccumulator) {
    referenceSquares += other.referenceSquares
    reconstructionSquares += other.reconstructionSquares
    errorSquares += other.errorSquares
    dot += other.dot
    maxAbsError = max(maxAbsError, other.maxAbsError)
    nonFinite += other.nonFinite
  }

  public var metrics: ErrorMetrics {
    let relative: Double =
      referenceSquares > 0 ? (errorSquares / referenceSquares).squareRoot() : (errorSquares > 0 ? .infinity : 0)
    let sqnr: Double? = errorSquares > 0 ? 10 * Foundation.log10(referenceSquares / errorSquares) : nil
    let cosine: Double
    if errorSquares == 0 {
      cosine = 1  // identical values (the ratio below would round to 1 +- 1 ulp)
    } else if referenceSquares > 0 && reconstructionSquares > 0 {
      // Clamped: rounding can take the ratio a hair outside [-1, 1].
      cosine = min(1, max(-1, dot / (referenceSquares.squareRoot() * reconstructionSquares.squareRoot())))
    } else {
      cosine = 0  // one side is all zeros and the other is not
    }
    return ErrorMetrics(
      relativeFrobeniusError: relative, sqnrDB: sqnr, cosineSimilarity: cosine, maxAbsError: Double(maxAbsError),
      nonFiniteCount: nonFinite, referenceEnergy: referenceSquares, errorEnergy: errorSquares)
  }
}

/// Compares a stored tensor with a dense Float32 reconstruction, converting the
/// stored values chunk by chunk so memory stays bounded.
func measure(_ input: TensorInput, against reconstruction: [Float]) -> ErrorAccumulator {
  var accumulator = ErrorAccumulator()
  let count = input.elementCount
  reconstruction.withUnsafeBufferPointer { out in
    forEachChunk(of: input, count: count) { start, chunk in
      accumulator.add(
        reference: chunk, reconstruction: UnsafeBufferPointer(rebasing: out[start..<(start + chunk.count)]))
    }
  }
  return accumulator
}

/// Elements per chunk when a pass streams through a tensor (4 MiB of Float32).
public let chunkElementCount = 1 << 20

/// Calls `body` with consecutive Float32 chunks of `input` (start index, values).
/// F32 input is passed through without a copy; other dtypes are converted into a
/// reused scratch buffer. Chunks are whole bytes for F4 (an even length).
public func forEachChunk(
  of input: TensorInput, count: Int, _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void
) rethrows {
  let dtype = input.descriptor.dtype
  if dtype == .f32 {
    let all = input.bytes.assumingMemoryBound(to: Float.self)
    var start = 0
    while start < count {
      let n = min(chunkElementCount, count - start)
      try body(start, UnsafeBufferPointer(rebasing: all[start..<(start + n)]))
      start += n
    }
    return
  }
  var scratch = [Float](repeating: 0, count: min(chunkElementCount, count))
  try scratch.withUnsafeMutableBufferPointer { buffer in
    var start = 0
    while start < count {
      let n = min(chunkElementCount, count - start)
      let byteStart = start * dtype.bitsPerElement / 8
      let byteEnd = (start + n) * dtype.bitsPerElement / 8
      Float32Conversion.convert(
        UnsafeRawBufferPointer(rebasing: input.bytes[byteStart..<byteEnd]), dtype: dtype, count: n, into: buffer)
      try body(start, UnsafeBufferPointer(rebasing: buffer[0..<n]))
      start += n
    }
  }
}

extension ErrorAccumulator: Codable {
  enum CodingKeys: String, CodingKey {
    case referenceSquares = "reference_squares"
    case reconstructionSquares = "reconstruction_squares"
    case errorSquares = "error_squares"
    case dot
    case maxAbsError = "max_abs_error"
    case nonFinite = "non_finite"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init()
    referenceSquares = try c.decode(Double.self, forKey: .referenceSquares)
    reconstructionSquares = try c.decode(Double.self, forKey: .reconstructionSquares)
    errorSquares = try c.decode(Double.self, forKey: .errorSquares)
    dot = try c.decode(Double.self, forKey: .dot)
    maxAbsError = try c.decode(Float.self, forKey: .maxAbsError)
    nonFinite = try c.decode(Int.self, forKey: .nonFinite)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(referenceSquares, forKey: .referenceSquares)
    try c.encode(reconstructionSquares, forKey: .reconstructionSquares)
    try c.encode(errorSquares, forKey: .errorSquares)
    try c.encode(dot, forKey: .dot)
    try c.encode(maxAbsError, forKey: .maxAbsError)
    try c.encode(nonFinite, forKey: .nonFinite)
  }
}
