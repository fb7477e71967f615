import CKernels
import CheckpointIO
import Foundation

/// compressed-tensors' `float-quantized` layout (FP8_DYNAMIC, FP8_BLOCK): for a weight W
/// [out, in], `<weight>` F8_E4M3 [out, in] = e4m3(clamp(W / s, +-448)) and `<weight>_scale`
/// in W's dtype, one per output row ([out, 1], s = row amax / 448) or per block
/// ([ceil(out/128), ceil(in/128)] for 128 x 128 blocks). The quantized weight keeps the
/// weight's name. Decoding is r(r(q) x s) in the scale's dtype, as compressed-tensors'
/// `_dequantize` computes it.
public struct Float8Codec: QuantizationCodec {
  /// Rows and columns per scale; nil for one scale per output row.
  public let blockStructure: [Int]?

  public init(block: [Int]?) {
    blockStructure = block
  }

  public var format: String { "float-quantized" }
  public var layoutName: String { "float-quantized FP8" }
  public var bits: Int { 8 }
  var perChannel: Bool { blockStructure == nil }
  /// The scale block (rows, columns) of a blocked layout.
  private var block: [Int] { blockStructure ?? [1, 1] }

  public static let readableFormat = "float-quantized (FP8)"

  public static func described(format: String, weights: JSONValue?) -> Float8Codec? {
    guard format == "float-quantized", weights?["num_bits"]?.uint64Value == 8 else { return nil }
    let block = weights?["block_structure"]?.arrayValue?.compactMap { $0.uint64Value.map(Int.init) }
    return Float8Codec(block: block.flatMap { $0.count == 2 && $0[0] > 0 && $0[1] > 0 ? $0 : nil })
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let scaleShape =
      perChannel ? [rows, 1] : [(rows + block[0] - 1) / block[0], (columns + block[1] - 1) / block[1]]
    return (
      [
        PlannedTensor(name: weight.name, dtype: .f8E4M3, shape: [rows, columns]),
        PlannedTensor(name: weight.name + "_scale", dtype: weight.dtype, shape: scaleShape),
      ], perChannel ? "per output channel" : "\(block[0])x\(block[1]) blocks"
    )
  }

  public var weightArguments: [JSONMember] {
    var members: [JSONMember] = [
      JSONMember("dynamic", .bool(false)), JSONMember("group_size", .null), JSONMember("num_bits", .number("8")),
      JSONMember("strategy", .string(perChannel ? "channel" : "block")), JSONMember("symmetric", .bool(true)),
      JSONMember("type", .string("float")),
    ]
    if let blockStructure {
      members.append(JSONMember("block_structure", .array(blockStructure.map { .number(String($0)) })))
    }
    return members
  }

  /// FP8 presets also declare dynamic per-token (or, blocked, per-group) FP8 activations.
  public var inputActivations: JSONValue {
    .object([
      JSONMember("dynamic", .bool(true)),
      JSONMember("group_size", perChannel ? .null : .number(String(block[1]))),
      JSONMember("num_bits", .number("8")),
      JSONMember("strategy", .string(perChannel ? "token" : "group")),
      JSONMember("symmetric", .bool(true)), JSONMember("type", .string("float")),
    ])
  }

  /// FP8 E4M3 with one scale per row or per 128 x 128 block: s = amax / 448 and
  /// q = e4m3(clamp(W / s, +-448)), each step in W's dtype. With the MSE search, the
  /// block's scale is alpha * amax / 448 for the best clipping factor alpha.
  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let round = DTypeRounding(input.descriptor.dtype)
    let block = perChannel ? (rows: 1, columns: columns) : (rows: self.block[0], columns: self.block[1])
    let blockRows = (rows + block.rows - 1) / block.rows
    let blockColumns = (columns + block.columns - 1) / block.columns
    let searching = context.scaleSearch == .mse
    func blockIndex(_ row: Int, _ column: Int) -> Int { (row / block.rows) * blockColumns + column / block.columns }
    @Sendable func scale(_ amax: Float, _ alpha: Float) -> Float {
      let s = round(alpha * amax / 448)
      return s == 0 ? round.epsilon : s
    }
    func decode(_ value: Float, _ scale: Float) -> (UInt8, Float) {
      let code = Self.code(value, scale: scale, round: round)
      return (code, Self.value(code, scale: scale, round: round))
    }
    if perChannel && !searching {
      // One scale per row: each row's amax, scale and codes in a single pass.
      var codes: [UInt8] = RowLoops.uninitialized(rows * columns)
      var scales: [Float] = RowLoops.uninitialized(rows)
      let dtypeCode = RowLoops.kernelDType(input.descriptor.dtype)
      let error = codes.withUnsafeMutableBufferPointer { codeOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          nonisolated(unsafe) let (codeOut, scaleOut) = (codeOut, scaleOut)
          return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            var nonfinite: UInt64 = 0
            scaleOut[row] = scale(sck_absmax_f32(values.baseAddress, columns, &nonfinite), 1)
            sck_quantize_fp8(
              values.baseAddress, columns, scaleOut.baseAddress! + row, columns, dtypeCode,
              codeOut.baseAddress! + row * columns, reconstruction.baseAddress)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: [.owned(codes), .owned(DenseCodec.encode(scales, as: input.descriptor.dtype))],
        reconstruction: .measured(error))
    }
    // First pass: each row's amax per column block, in parallel; then the amax of every
    // block (FP8_BLOCK blocks span 128 rows).
    // (Non-finite weights are left out here and rejected by the quantizing pass.)
    var rowAmax = [Float](repeating: 0, count: rows * blockColumns)
    rowAmax.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      _ = RowLoops.parallelRows(input, rows: rows, columns: columns, measure: false) { row, values, _ in
        var nonfinite: UInt64 = 0
        for b in 0..<blockColumns {
          let start = b * block.columns
          out[row * blockColumns + b] = sck_absmax_f32(
            values.baseAddress! + start, min(block.columns, columns - start), &nonfinite)
        }
      }
    }
    var amax = [Float](repeating: 0, count: blockRows * blockColumns)
    for row in 0..<rows {
      for b in 0..<blockColumns {
        amax[(row / block.rows) * blockColumns + b] = max(
          amax[(row / block.rows) * blockColumns + b], rowAmax[row * blockColumns + b])
      }
    }
    var alphas = [Float](repeating: 1, count: amax.count)
    if searching {
      // Second pass: each block's squared error for every clipping factor.
      let factors = ScaleSearch.clippingFactors
      var errors = [Double](repeating: 0, count: amax.count * factors.count)
      _ = try RowLoops.forEachRow(input, rows: rows, columns: columns) { row, values, _, _ in
        for c in 0..<columns {
          let b = blockIndex(row, c)
          for (k, alpha) in factors.enumerated() {
            let d = Double(values[c]) - Double(decode(values[c], scale(amax[b], alpha)).1)
            errors[b * factors.count + k] += d * d
          }
        }
      }
      for b in amax.indices {
        var best = 0
        for k in 1..<factors.count where errors[b * factors.count + k] < errors[b * factors.count + best] { best = k }
        alphas[b] = factors[best]
      }
    }
    let scales = amax.indices.map { scale(amax[$0], alphas[$0]) }
    var codes: [UInt8] = RowLoops.uninitialized(rows * columns)  // every element written below
    if !searching {
      let dtypeCode = RowLoops.kernelDType(input.descriptor.dtype)
      let error = codes.withUnsafeMutableBufferPointer { codeOut in
        scales.withUnsafeBufferPointer { scaleIn in
          nonisolated(unsafe) let (codeOut, scaleIn) = (codeOut, scaleIn)
          return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_fp8(
              values.baseAddress, columns, scaleIn.baseAddress! + (row / block.rows) * blockColumns, block.columns,
              dtypeCode, codeOut.baseAddress! + row * columns, reconstruction.baseAddress)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: [.owned(codes), .owned(DenseCodec.encode(scales, as: input.descriptor.dtype))],
        reconstruction: .measured(error))
    }
    let (error, baseline) = try RowLoops.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
      row, values, reconstruction, alternative in
      for c in 0..<columns {
        let b = blockIndex(row, c)
        let (code, value) = decode(values[c], scales[b])
        codes[row * columns + c] = code
        reconstruction[c] = value
        if searching { alternative[c] = decode(values[c], scale(amax[b], 1)).1 }
      }
    }
    return TransformResult(
      outputs: [.owned(codes), .owned(DenseCodec.encode(scales, as: input.descriptor.dtype))],
      reconstruction: .measured(error), baseline: baseline)
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    guard QuantizedNames.weight(of: stored.name, suffix: "") != nil, stored.dtype == .f8E4M3, stored.shape.count == 2
    else { return nil }
    return DenseWeight(name: stored.name, shape: stored.shape, dtype: nil, note: "dequantized")
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool { QuantizedNames.isCompanion(stored.name) }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    try Self.dequantize(
      primary, scale: try requiredCompanion(primary, weight.name + "_scale"), block: blockStructure)
  }

  /// An FP8 (E4M3) weight [rows, columns] times its scale, one per row (nil `block`) or
  /// per `block` (FP8_BLOCK's block_structure), in the scale's dtype as compressed-tensors'
  /// `_dequantize` computes it: r(r(q) x s).
  static func dequantize(_ weight: TensorInput, scale: TensorInput, block: [Int]?) throws(SwiftCompressError)
    -> [Float]
  {
    let (rows, columns) = (weight.descriptor.shape[0], weight.descriptor.shape[1])
    let scaleShape = scale.descriptor.shape
    let block = block.flatMap { $0.count == 2 && $0[0] > 0 && $0[1] > 0 ? $0 : nil } ?? [1, columns]
    let (blockRows, blockColumns) = (block[0], block[1])
    guard scaleShape.count == 2, (rows + blockRows - 1) / blockRows == scaleShape[0],
      (columns + blockColumns - 1) / blockColumns == scaleShape[1]
    else {
      throw .invalidTensor(
        name: scale.descriptor.name,
        reason: "shape \(scaleShape) does not match [\(rows), \(columns)] in blocks of \(block)")
    }
    let scales = scale.floats()
    let round = DTypeRounding(scale.descriptor.dtype)
    let values = weight.floats()
    var dense = [Float](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      for column in 0..<columns {
        let s = scales[(row / blockRows) * scaleShape[1] + column / blockColumns]
        dense[row * columns + column] = round(round(values[row * columns + column]) * s)
      }
    }
    return dense
  }

  /// The E4M3 code of `value` for scale `s`: e4m3(clamp(r(value / s), +-448)), the division
  /// in the weight's dtype (FP8 and MXFP8).
  @inline(__always)
  static func code(_ value: Float, scale: Float, round: DTypeRounding) -> UInt8 {
    Float32Conversion.e4m3Code(min(max(round(value / scale), -448), 448))
  }

  /// The value E4M3 code `code` decodes to with scale `s`: r(r(q) x s), as `dequantize`.
  @inline(__always)
  static func value(_ code: UInt8, scale: Float, round: DTypeRounding) -> Float {
    round(round(Float32Conversion.e4m3Table[Int(code)]) * scale)
  }
}
