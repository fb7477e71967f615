import CheckpointIO
import Foundation

// The grids of the codecs `quantize` writes (`QuantizationGrid`): each is read back from
// what the codec's `encode(_:context:)` writes for the original weight, and rounds and
// writes values with the codec's own per-value arithmetic (`IntegerCodeRule`,
// `Float8Codec.code`, ...), so it cannot drift from the codec.

/// What the codecs' grids share: the weight's shape, name and dtype, one parameter
/// (scale, zero point, effective scale) per row and group of columns, and the outputs
/// after the primary tensor (scales, zero points, shape, global scale) exactly as the
/// codec's `encode` wrote them for the original weight.
///
/// The parameters are read back from those outputs, so they are the codec's choice
/// (the reference's rule, the MSE search, the kernels' or the Swift loops') by
/// construction. They are stored group-major (`parameters[g * rows + r]`), so that one
/// column's are contiguous for `round`.
struct GridStorage<Parameter: BitwiseCopyable & Sendable>: Sendable {
  /// The weight's name, for errors.
  let name: String
  let rows: Int
  let columns: Int
  /// Columns per parameter.
  let group: Int
  let parameters: [Parameter]
  /// `encode`'s outputs after the primary tensor.
  let companions: [[UInt8]]

  /// Storage whose parameter for row r and group g is `parameter(r, g)`.
  init(
    _ input: TensorInput, group: Int, companions: [[UInt8]], parameter: (_ row: Int, _ group: Int) -> Parameter
  ) {
    name = input.descriptor.name
    (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    self.group = group
    self.companions = companions
    let (rows, groups) = (rows, (columns + group - 1) / group)
    var parameters: [Parameter] = []
    parameters.reserveCapacity(rows * groups)
    for g in 0..<groups {
      for r in 0..<rows { parameters.append(parameter(r, g)) }
    }
    self.parameters = parameters
  }

  /// Replaces each of column `column`'s values by `quantize(value, parameter)`.
  @inline(__always)
  func round(column: Int, values: UnsafeMutableBufferPointer<Float>, _ quantize: (Float, Parameter) -> Float) {
    precondition(values.count == rows && column >= 0 && column < columns, "column \(column) of \(rows) values")
    parameters.withUnsafeBufferPointer { p in
      let start = (column / group) * rows
      for r in 0..<rows { values[r] = quantize(values[r], p[start + r]) }
    }
  }

  /// `code(value, parameter)` of every value (row-major [rows, columns]), after checking
  /// that there are that many and all are finite.
  @inline(__always)
  func codes(_ values: [Float], _ code: (Float, Parameter) -> UInt8) throws(SwiftCompressError) -> [UInt8] {
    guard values.count == rows * columns else {
      throw .invalidTensor(
        name: name, reason: "\(values.count) calibrated values for a weight of \(rows) x \(columns)")
    }
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      throw .invalidTensor(
        name: name,
        reason:
          "calibrated element [\(bad / columns), \(bad % columns)] is \(values[bad]); quantization needs finite values")
    }
    var codes = [UInt8](repeating: 0, count: rows * columns)
    parameters.withUnsafeBufferPointer { p in
      for r in 0..<rows {
        for c in 0..<columns { codes[r * columns + c] = code(values[r * columns + c], p[(c / group) * rows + r]) }
      }
    }
    return codes
  }

  /// The result of `encode(values:)`: the primary tensor, then the stored companions.
  func result(primary: [UInt8]) -> TransformResult {
    TransformResult(outputs: [.owned(primary)] + companions.map { .owned($0) }, reconstruction: .notApplicable)
  }

  /// The bytes of each of `result`'s outputs (`encode(_:context:)` writes owned bytes).
  static func bytes(of result: TransformResult, input: TensorInput) -> [[UInt8]] {
    result.outputs.map {
      switch $0 {
      case .owned(let bytes): bytes
      case .borrowed(let bytes): Array(bytes)
      case .input: Array(input.bytes)
      }
    }
  }
}

/// Packs E2M1 codes (one per byte) two per byte, the even element in the low nibble, as
/// MXFP4 and NVFP4 store them.
func packNibbles(_ codes: [UInt8]) -> [UInt8] {
  (0..<(codes.count / 2)).map { codes[2 * $0] | codes[2 * $0 + 1] << 4 }
}

extension IntegerPackCodec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its scales and zero points, read back from
  /// what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<IntegerGrid.Parameter>.bytes(of: try encode(input, context: context), input: input)
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let group = groupSize == 0 ? columns : groupSize
    let groups = columns / group
    let scales = encoded[1].withUnsafeBytes {
      Float32Conversion.floats($0, dtype: input.descriptor.dtype, count: rows * groups)
    }
    let zeroPoints =
      symmetric
      ? [Float](repeating: 0, count: rows * groups)
      : encoded[2].withUnsafeBytes { self.zeroPoints($0, wordRows: $0.count / 4 / groups, rows: rows, groups: groups) }
    let storage = GridStorage<IntegerGrid.Parameter>(input, group: group, companions: Array(encoded.dropFirst())) {
      r, g in IntegerGrid.Parameter(scale: scales[r * groups + g], zeroPoint: zeroPoints[r * groups + g])
    }
    return IntegerGrid(
      storage: storage, rule: IntegerCodeRule(bits: bits, symmetric: symmetric, dtype: input.descriptor.dtype),
      bits: bits)
  }
}

/// `IntegerPackCodec`'s grid: a scale and zero point per row and group.
///
/// 8-bit codes in BF16 are the one case where the codec's arithmetic does not hold its
/// own values: r(q x s) / s is off by up to |q| x 2^-8, so re-encoding the value of a
/// large code can give its neighbour. `encode(values:)` stores such a value as the code it
/// is the value of (so calibrated values read back exactly, as the contract says), and
/// every other value as the codec does; a dense weight lying exactly on such a value is
/// therefore stored differently from `encode(_:context:)`, and read back more exactly.
struct IntegerGrid: QuantizationGrid {
  struct Parameter: BitwiseCopyable, Sendable {
    var scale: Float
    var zeroPoint: Float
  }

  let storage: GridStorage<Parameter>
  let rule: IntegerCodeRule
  let bits: Int

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    let rule = rule
    storage.round(column: column, values: values) { value, p in
      // The code as stored, an integer: a negative zero reads back as 0.
      let q = Float(Int(rule.code(value, scale: p.scale, zeroPoint: p.zeroPoint)))
      return rule.value(q, scale: p.scale, zeroPoint: p.zeroPoint)
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    let (rule, offset) = (rule, Float(1 << (bits - 1)))
    let codes = try storage.codes(values) { value, p in
      var q = Float(Int(rule.code(value, scale: p.scale, zeroPoint: p.zeroPoint)))
      if rule.value(q, scale: p.scale, zeroPoint: p.zeroPoint) != value {
        // 8-bit codes in BF16: r(q x s) / s is off by up to |q| x 2^-8, so the reference's
        // arithmetic can take some codes' own values to a neighbour. Such a value is stored
        // as the code it is the value of, so that it reads back exactly.
        if q > rule.qmin && rule.value(q - 1, scale: p.scale, zeroPoint: p.zeroPoint) == value {
          q -= 1
        } else if q < rule.qmax && rule.value(q + 1, scale: p.scale, zeroPoint: p.zeroPoint) == value {
          q += 1
        }
      }
      return UInt8(q + offset)
    }
    let (rows, columns) = (rows, columns)
    let words = columns * bits / 32
    var packed = [UInt8](repeating: 0, count: rows * words * 4)
    packed.withUnsafeMutableBytes { out in
      for r in 0..<rows {
        IntegerPackCodec.pack(
          Array(codes[(r * columns)..<((r + 1) * columns)]), bits: bits, into: out, wordOffset: r * words)
      }
    }
    return storage.result(primary: packed)
  }
}

extension Float8Codec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its scales (per row or per block), read back
  /// from what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<Float>.bytes(of: try encode(input, context: context), input: input)
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let block = blockStructure.map { (rows: $0[0], columns: $0[1]) } ?? (rows: 1, columns: columns)
    let blockColumns = (columns + block.columns - 1) / block.columns
    let count = (rows + block.rows - 1) / block.rows * blockColumns
    let scales = encoded[1].withUnsafeBytes {
      Float32Conversion.floats($0, dtype: input.descriptor.dtype, count: count)
    }
    let storage = GridStorage<Float>(input, group: block.columns, companions: Array(encoded.dropFirst())) { r, g in
      scales[(r / block.rows) * blockColumns + g]
    }
    return Float8Grid(storage: storage, round: DTypeRounding(input.descriptor.dtype))
  }
}

/// `Float8Codec`'s grid: a scale per row (FP8_DYNAMIC) or per 128 x 128 block (FP8_BLOCK).
struct Float8Grid: QuantizationGrid {
  let storage: GridStorage<Float>
  let round: DTypeRounding

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    let round = round
    storage.round(column: column, values: values) { value, scale in
      Float8Codec.value(Float8Codec.code(value, scale: scale, round: round), scale: scale, round: round)
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    let round = round
    return storage.result(primary: try storage.codes(values) { Float8Codec.code($0, scale: $1, round: round) })
  }
}

extension MXFP4Codec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its exponents, read back from what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<Float>.bytes(of: try encode(input, context: context), input: input)
    let groups = input.descriptor.shape[1] / 32
    let storage = GridStorage<Float>(input, group: 32, companions: Array(encoded.dropFirst())) { r, g in
      Self.scale(exponent: Int(encoded[1][r * groups + g]))
    }
    return MXFP4Grid(storage: storage, round: DTypeRounding(input.descriptor.dtype))
  }
}

/// `MXFP4Codec`'s grid: a power-of-two scale per 32 values of a row.
struct MXFP4Grid: QuantizationGrid {
  let storage: GridStorage<Float>
  let round: DTypeRounding

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    let round = round
    storage.round(column: column, values: values) { value, scale in
      Float32Conversion.e2m1Table[Int(MXFP4Codec.code(value, scale: scale, round: round))] * scale
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    let round = round
    return storage.result(
      primary: packNibbles(try storage.codes(values) { MXFP4Codec.code($0, scale: $1, round: round) }))
  }
}

extension MXFP6Codec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its exponents, read back from what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<MXGridScale>.bytes(of: try encode(input, context: context), input: input)
    let groups = input.descriptor.shape[1] / 32
    let dtype = input.descriptor.dtype
    let storage = GridStorage<MXGridScale>(input, group: 32, companions: Array(encoded.dropFirst())) { r, g in
      MXGridScale(byte: encoded[1][r * groups + g], dtype: dtype)
    }
    return MXFP6Grid(storage: storage, round: DTypeRounding(dtype))
  }
}

/// The two scales of one MX group's stored exponent: the weight's dtype's, which values
/// are divided by, and the decoder's (BF16).
struct MXGridScale: BitwiseCopyable, Sendable {
  var encoding: Float
  var decoding: Float

  init(byte: UInt8, dtype: DType) {
    encoding = MXScale.scale(byte: Int(byte), dtype: dtype)
    decoding = MXScale.decodedScale(byte)
  }
}

/// `MXFP6Codec`'s grid: an E8M0 scale per 32 values of a row.
struct MXFP6Grid: QuantizationGrid {
  let storage: GridStorage<MXGridScale>
  let round: DTypeRounding

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    let round = round
    storage.round(column: column, values: values) { value, scale in
      MXFP6Codec.decoded(MXFP6Codec.code(value, scale: scale.encoding, round: round), scale: scale.decoding)
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    let round = round
    let codes = try storage.codes(values) { MXFP6Codec.code($0, scale: $1.encoding, round: round) }
    var packed = [UInt8](repeating: 0, count: codes.count * 3 / 4)
    MXFP6Codec.pack(codes[...], into: &packed, at: 0)
    return storage.result(primary: packed)
  }
}

extension MXFP8Codec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its exponents, read back from what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<MXGridScale>.bytes(of: try encode(input, context: context), input: input)
    let groups = input.descriptor.shape[1] / 32
    let dtype = input.descriptor.dtype
    let storage = GridStorage<MXGridScale>(input, group: 32, companions: Array(encoded.dropFirst())) { r, g in
      MXGridScale(byte: encoded[1][r * groups + g], dtype: dtype)
    }
    return MXFP8Grid(storage: storage, round: DTypeRounding(dtype))
  }
}

/// `MXFP8Codec`'s grid: an E8M0 scale per 32 values of a row.
struct MXFP8Grid: QuantizationGrid {
  let storage: GridStorage<MXGridScale>
  let round: DTypeRounding

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    let round = round
    storage.round(column: column, values: values) { value, scale in
      MXFP8Codec.decoded(Float8Codec.code(value, scale: scale.encoding, round: round), scale: scale.decoding)
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    let round = round
    return storage.result(primary: try storage.codes(values) { Float8Codec.code($0, scale: $1.encoding, round: round) })
  }
}

extension NVFP4Codec: QuantizationGridProvider {
  /// The grid of `encode(input, context:)`: its E4M3 group scales and global scale (the
  /// context's, or the weight's own), read back from what it writes.
  public func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    let encoded = GridStorage<Float>.bytes(of: try encode(input, context: context), input: input)
    let groups = input.descriptor.shape[1] / 16
    let global = encoded[2].withUnsafeBytes { Float32Conversion.floats($0, dtype: .f32, count: 1)[0] }
    let table = Float32Conversion.e4m3Table
    let storage = GridStorage<Float>(input, group: 16, companions: Array(encoded.dropFirst())) { r, g in
      table[Int(encoded[1][r * groups + g])] / global
    }
    return NVFP4Grid(storage: storage)
  }
}

/// `NVFP4Codec`'s grid: an effective scale (E4M3 group scale / global scale) per 16 values
/// of a row.
struct NVFP4Grid: QuantizationGrid {
  let storage: GridStorage<Float>

  var rows: Int { storage.rows }
  var columns: Int { storage.columns }

  func round(column: Int, values: UnsafeMutableBufferPointer<Float>) {
    storage.round(column: column, values: values) { value, effective in
      NVFP4Codec.decoded(NVFP4Codec.code(value, effective: effective), effective: effective)
    }
  }

  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult {
    storage.result(primary: packNibbles(try storage.codes(values) { NVFP4Codec.code($0, effective: $1) }))
  }
}
