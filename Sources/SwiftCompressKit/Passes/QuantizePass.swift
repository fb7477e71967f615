import CKernels
import CheckpointIO
import Foundation

/// How `quantize` chooses each group's scale.
public enum ScaleSearch: String, CaseIterable, Codable, Sendable {
  /// The reference's rule: the scale maps the group's largest magnitude to the largest code.
  case none
  /// Per group, the scale (clipping factor, or for MX and NVFP4 the neighbouring scale
  /// codes) with the least squared error, in the same on-disk format.
  case mse
}

/// Quantization schemes, by llm-compressor's preset names.
public enum QuantizationScheme: String, CaseIterable, Codable, Sendable {
  case w8a16 = "W8A16"
  case w4a16 = "W4A16"
  case w4a16Asym = "W4A16_ASYM"
  case fp8Dynamic = "FP8_DYNAMIC"
  case fp8Block = "FP8_BLOCK"
  case mxfp4 = "MXFP4A16"
  case nvfp4 = "NVFP4A16"

  /// Bits per quantized value.
  public var bits: Int {
    switch self {
    case .w8a16, .fp8Dynamic, .fp8Block: 8
    case .w4a16, .w4a16Asym, .mxfp4, .nvfp4: 4
    }
  }

  public var symmetric: Bool { self != .w4a16Asym }

  /// FP8 (E4M3) values rather than integers.
  public var isFloat8: Bool { self == .fp8Dynamic || self == .fp8Block }

  /// The compressed-tensors format name written in `quantization_config`.
  public var format: String {
    switch self {
    case .fp8Dynamic, .fp8Block: "float-quantized"
    case .mxfp4: "mxfp4-pack-quantized"
    case .nvfp4: "nvfp4-pack-quantized"
    default: "pack-quantized"
    }
  }

  /// FP4 (E2M1) values with microscaling block scales.
  public var isFP4: Bool { self == .mxfp4 || self == .nvfp4 }

  /// How a scheme with fixed scale groups groups them ("groups of 16"); nil for the
  /// integer schemes, whose group size is chosen.
  public var fixedGrouping: String? {
    switch self {
    case .fp8Dynamic: "one scale per output channel"
    case .fp8Block: "one scale per 128x128 block"
    case .mxfp4: "groups of 32"
    case .nvfp4: "groups of 16"
    case .w8a16, .w4a16, .w4a16Asym: nil
    }
  }

  /// Parses a scheme name, case-insensitively; MXFP4 and NVFP4 are accepted for the A16 presets.
  public init?(name: String) {
    for (alias, scheme) in [("MXFP4", Self.mxfp4), ("NVFP4", Self.nvfp4)]
    where name.caseInsensitiveCompare(alias) == .orderedSame {
      self = scheme
      return
    }
    guard let scheme = Self.allCases.first(where: { $0.rawValue.caseInsensitiveCompare(name) == .orderedSame }) else {
      return nil
    }
    self = scheme
  }
}

/// Weight quantization in the compressed-tensors layouts, bit for bit as llm-compressor
/// 0.14's `model_free_ptq` with compressed-tensors 0.20 writes them.
///
/// FP8 schemes (`float-quantized`): `M.weight` F8_E4M3 [out, in] = e4m3(clamp(W / s, +-448))
/// and `M.weight_scale` in W's dtype, one per output row (FP8_DYNAMIC, [out, 1],
/// s = row amax / 448) or per 128 x 128 block (FP8_BLOCK, [ceil(out/128), ceil(in/128)]).
///
/// Integer schemes (`pack-quantized`), groups of `g` consecutive inputs:
/// For a module M with weight W [out, in] and groups of `g` consecutive inputs:
/// - `M.weight_packed` I32 [out, in * bits / 32]: q + 2^(bits-1), packed into int32 words
///   from the least significant bit;
/// - `M.weight_scale` [out, in / g] in W's dtype;
/// - `M.weight_zero_point` I32 [out * 4 / 32, in / g] (asymmetric only), packed the same
///   way along the output dimension;
/// - `M.weight_shape` I64 [2] = [out, in].
///
/// The arithmetic follows the reference step by step in W's dtype (each operation done
/// in Float32 and rounded to BF16 or F16 when W is), which is what makes the bytes equal:
/// symmetric s = amax / ((qmax - qmin) / 2); asymmetric s = (max - min) / (qmax - qmin)
/// and zp = round(clamp(qmin - min / s)); q = round-half-even(clamp(W / s (+ zp))).
/// A scale of exactly zero (an all-zero group) becomes the dtype's epsilon, as in the
/// reference.
public struct QuantizePass: CompressionPass {
  public static let identifier = "quantize"
  public static let summary = "integer group quantization in the compressed-tensors pack-quantized layout"
  public static let compressedTensorsVersion = "0.20.0"
  public let configuration: Configuration
  let ignoreRules: [IgnoreRule]
  /// NVFP4 global scales by module, from `prepared(for:)`.
  var globalScales: [String: Float] = [:]
  /// FP8 (compressed-tensors `float-quantized`) input weights, by module: they are
  /// dequantized (weight x scale, in the scale's dtype) before quantizing.
  var fp8Sources: [String: FP8Source] = [:]

  struct FP8Source: Sendable {
    var scaleDType: DType
    /// Scale block (rows, columns), nil for one scale per row.
    var block: [Int]?
  }

  public var warnings: [String] {
    fp8Sources.isEmpty
      ? []
      : [
        "the input holds \(Format.count(fp8Sources.count, "FP8 weight")): each is dequantized (weight x scale) before quantizing, and errors are measured against the dequantized values"
      ]
  }

  public init(configuration: Configuration) throws(SwiftCompressError) {
    let fixedGroups = configuration.scheme.isFloat8 || configuration.scheme.isFP4
    guard fixedGroups || configuration.groupSize >= 0,
      fixedGroups || configuration.groupSize % (32 / configuration.scheme.bits) == 0
    else {
      throw .invalidConfiguration(
        pass: Self.identifier,
        reason: "group size \(configuration.groupSize) must be a positive multiple of \(32 / configuration.scheme.bits)"
      )
    }
    self.configuration = configuration
    ignoreRules = try configuration.ignore.map { (entry) throws(SwiftCompressError) in try IgnoreRule(entry) }
  }

  /// NVFP4 needs, before any tensor is written, one global scale per fused set of
  /// modules (q/k/v projections share one, gate/up share one, as vLLM requires):
  /// g = 2688 x (1 / amax) over the set, computed as PyTorch does (reciprocal, then
  /// product, each rounded to the weight's dtype). This reads every weight to be
  /// quantized once, chunk by chunk. `--include`/`--exclude` are not seen here: an
  /// excluded partner still counts towards its set's amax.
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> QuantizePass {
    var pass = self
    pass.fp8Sources = try Self.fp8Sources(checkpoint)
    return try pass.withGlobalScales(checkpoint)
  }

  private func withGlobalScales(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> QuantizePass {
    guard configuration.scheme == .nvfp4 else { return self }
    var amaxBySet: [String: Float] = [:]
    var setOf: [String: String] = [:]
    var dtypeOf: [String: DType] = [:]
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      guard case .transform = try plan(descriptor), let module = Self.module(of: tensor.name) else { continue }
      let amax: Float
      if let source = fp8Sources[module], let scale = checkpoint.tensor(named: module + ".weight_scale") {
        let dense = try DecompressPass.dequantizeFloat8(
          TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor)),
          scale: TensorInput(descriptor: TensorDescriptor(scale.info), bytes: checkpoint.bytes(of: scale)),
          block: source.block)
        amax = dense.reduce(0) { max($0, abs($1)) }
      } else {
        let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor))
        amax = Self.absMax(input)
      }
      checkpoint.release(tensor)
      let set = Self.fusedSet(of: module)
      setOf[module] = set
      dtypeOf[module] = fp8Sources[module]?.scaleDType ?? tensor.info.dtype
      amaxBySet[set] = max(amaxBySet[set] ?? 0, amax)
    }
    var prepared = self
    for (module, set) in setOf {
      prepared.globalScales[module] = Self.globalScale(amax: amaxBySet[set] ?? 0, dtype: dtypeOf[module] ?? .f32)
    }
    return prepared
  }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] {
    IgnoreRule.unmatched(ignoreRules, in: checkpoint)
  }

  /// NVFP4's global scale for a largest magnitude `amax`, rounded as PyTorch computes it
  /// in the weight's dtype.
  static func globalScale(amax: Float, dtype: DType) -> Float {
    let round = DTypeRounding(dtype)
    let amax = max(amax, Float.leastNormalMagnitude)  // the reference clamps to finfo.tiny
    let scale = round(round(1 / amax) * 2688)
    return scale.isFinite ? scale : 1
  }

  /// A checkpoint that is already compressed is refused (quantizing it again would
  /// quantize the codes), except FP8 (`float-quantized`) checkpoints, whose weights are
  /// dequantized first: their modules are returned.
  static func fp8Sources(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> [String: FP8Source] {
    let quantization = LoaderContract.config(of: checkpoint)?["quantization_config"]
    let isFloat8 = quantization?["format"]?.stringValue == "float-quantized"
    if quantization != nil && !isFloat8 {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason: "is already quantized (its config.json has a quantization_config); run 'swiftcompress decompress' first"
      )
    }
    if let packed = checkpoint.tensors.first(where: { $0.name.hasSuffix(".weight_packed") }) {
      throw .invalidTensor(
        name: packed.name,
        reason: "the checkpoint already holds quantized weights; run 'swiftcompress decompress' first")
    }
    var sources: [String: FP8Source] = [:]
    let weights = quantization?["config_groups"]?.members?.first?.value["weights"]
    let block = weights?["block_structure"]?.arrayValue?.compactMap { $0.uint64Value.map(Int.init) }
    for tensor in checkpoint.tensors where tensor.info.dtype == .f8E4M3 {
      guard let module = module(of: tensor.name), let scale = checkpoint.tensor(named: module + ".weight_scale"),
        isFloat8
      else {
        throw .invalidTensor(
          name: tensor.name,
          reason:
            "an FP8 weight without a compressed-tensors weight_scale and quantization_config cannot be dequantized")
      }
      sources[module] = FP8Source(scaleDType: scale.info.dtype, block: block)
    }
    return sources
  }

  /// The fused set a module's NVFP4 global scale is shared with.
  static func fusedSet(of module: String) -> String {
    for (parts, name) in [(["q_proj", "k_proj", "v_proj"], "qkv"), (["gate_proj", "up_proj"], "gate_up")] {
      for part in parts where module.hasSuffix("." + part) {
        return String(module.dropLast(part.count)) + name
      }
    }
    return module
  }

  /// The module a `.weight` tensor belongs to.
  static func module(of name: String) -> String? {
    name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : nil
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    if tensor.name.hasSuffix(".weight_scale"), fp8Sources[String(tensor.name.dropLast(".weight_scale".count))] != nil {
      return .transform(outputs: [], note: "FP8 scale folded into the dequantized weight")
    }
    if let module = Self.module(of: tensor.name), let source = fp8Sources[module], tensor.dtype == .f8E4M3 {
      // Plan as the dense weight it stands for; a module left unquantized is written dense.
      let dense = PlannedTensor(name: tensor.name, dtype: source.scaleDType, shape: tensor.shape)
      switch try planDense(dense) {
      case .keep(let reason):
        return .transform(outputs: [dense], note: "FP8 dequantized (\(reason))")
      case let decision:
        return decision
      }
    }
    return try planDense(tensor)
  }

  private func planDense(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    let module: String
    switch try LinearWeights.select(tensor, ignoring: ignoreRules, verb: "quantized", factors: true) {
    case .keep(let reason): return .keep(reason: reason)
    case .module(let name): module = name
    }
    // Outputs are named after the weight: <module>.weight_packed, or for a factor of
    // factorize, <module>.weight_a_packed.
    let base = tensor.name
    let (rows, columns) = (tensor.shape[0], tensor.shape[1])
    let scheme = configuration.scheme
    if scheme.isFloat8 {
      let scaleShape = scheme == .fp8Dynamic ? [rows, 1] : [(rows + 127) / 128, (columns + 127) / 128]
      return .transform(
        outputs: [
          PlannedTensor(name: base, dtype: .f8E4M3, shape: [rows, columns]),
          PlannedTensor(name: base + "_scale", dtype: tensor.dtype, shape: scaleShape),
        ], note: scheme == .fp8Dynamic ? "FP8_DYNAMIC, per output channel" : "FP8_BLOCK, 128x128 blocks")
    }
    let group =
      scheme == .mxfp4 ? 32 : scheme == .nvfp4 ? 16 : configuration.groupSize == 0 ? columns : configuration.groupSize
    guard columns % group == 0, columns % (32 / scheme.bits) == 0 else {
      let perWord = 32 / scheme.bits
      let need =
        columns % group != 0
        ? "group size \(group) does not divide it" : "\(scheme.rawValue) packs \(perWord) codes per 32-bit word"
      let fix =
        tensor.name.hasSuffix(".weight_a")
        ? "choose a factorize rank that is a multiple of \(max(group == columns ? perWord : group, perWord))"
        : "choose a group size that divides \(columns)"
      throw .invalidTensor(
        name: tensor.name, reason: "its rows have \(columns) values and \(need); \(fix), or --ignore \(module)")
    }
    if scheme == .mxfp4 {
      return .transform(
        outputs: [
          PlannedTensor(name: base + "_packed", dtype: .u8, shape: [rows, columns / 2]),
          PlannedTensor(name: base + "_scale", dtype: .u8, shape: [rows, columns / 32]),
        ], note: "MXFP4, E8M0 scale per 32")
    }
    if scheme == .nvfp4 {
      return .transform(
        outputs: [
          PlannedTensor(name: base + "_packed", dtype: .u8, shape: [rows, columns / 2]),
          PlannedTensor(name: base + "_scale", dtype: .f8E4M3, shape: [rows, columns / 16]),
          PlannedTensor(name: base + "_global_scale", dtype: .f32, shape: [1]),
        ], note: "NVFP4, E4M3 scale per 16 and a global scale")
    }
    let bits = configuration.scheme.bits
    var outputs = [
      PlannedTensor(name: base + "_packed", dtype: .i32, shape: [rows, columns * bits / 32]),
      PlannedTensor(name: base + "_scale", dtype: tensor.dtype, shape: [rows, columns / group]),
    ]
    if !configuration.scheme.symmetric {
      outputs.append(
        PlannedTensor(
          name: base + "_zero_point", dtype: .i32, shape: [(rows * bits + 31) / 32, columns / group]))
    }
    outputs.append(PlannedTensor(name: base + "_shape", dtype: .i64, shape: [2]))
    let grouping = configuration.groupSize == 0 ? "per channel" : "group \(group)"
    return .transform(outputs: outputs, note: "\(configuration.scheme.rawValue), \(grouping)")
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    if outputs.isEmpty {  // an FP8 input scale, folded into its dequantized weight
      return TransformResult(outputs: [], reconstruction: .notApplicable)
    }
    guard let module = Self.module(of: input.descriptor.name), let source = fp8Sources[module],
      input.descriptor.dtype == .f8E4M3
    else {
      return try transformDense(input, outputs: outputs)
    }
    guard let scale = input.companion(named: module + ".weight_scale") else {
      throw .invalidTensor(
        name: module + ".weight_scale", reason: "missing: \(input.descriptor.name) cannot be dequantized")
    }
    let values = try DecompressPass.dequantizeFloat8(input, scale: scale, block: source.block)
    let bytes = Self.encode(values, as: source.scaleDType)
    let descriptor = PlannedTensor(name: input.descriptor.name, dtype: source.scaleDType, shape: input.descriptor.shape)
    if outputs.count == 1, outputs[0].dtype == source.scaleDType, outputs[0].name == input.descriptor.name {
      // A module left unquantized: written dense.
      return TransformResult(outputs: [.owned(bytes)], reconstruction: .notApplicable)
    }
    let result: Result<TransformResult, SwiftCompressError> = bytes.withUnsafeBytes { raw in
      Result { () throws(SwiftCompressError) -> TransformResult in
        try transformDense(TensorInput(descriptor: descriptor, bytes: raw), outputs: outputs)
      }
    }
    return try result.get()
  }

  private func transformDense(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError)
    -> TransformResult
  {
    let dtype = input.descriptor.dtype
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let scheme = configuration.scheme
    let group = configuration.groupSize == 0 ? columns : configuration.groupSize
    let groups = columns / group
    let bits = scheme.bits
    let qmin = Float(-(1 << (bits - 1)))
    let qmax = Float((1 << (bits - 1)) - 1)
    let round = DTypeRounding(dtype)

    if scheme.isFloat8 {
      return try float8(input, rows: rows, columns: columns, round: round)
    }
    if scheme == .mxfp4 {
      return try mxfp4(input, rows: rows, columns: columns, round: round)
    }
    if scheme == .nvfp4 {
      let global: Float
      if let module = Self.module(of: input.descriptor.name) {
        guard let prepared = globalScales[module] else {
          throw .passBrokePlan(pass: Self.identifier, tensor: input.descriptor.name, reason: "no NVFP4 global scale")
        }
        global = prepared
      } else {
        // A factor of factorize: its own global scale (factors are not fused).
        global = Self.globalScale(amax: Self.absMax(input), dtype: dtype)
      }
      return try nvfp4(input, rows: rows, columns: columns, globalScale: global)
    }
    let perWord = 32 / bits
    let words = columns / perWord
    let searching = configuration.scaleSearch == .mse
    // Every element of these is written below (the kernel or the search loop).
    var packed = searching ? [UInt8](repeating: 0, count: rows * words * 4) : Self.uninitialized(rows * words * 4)
    var scales: [Float] = Self.uninitialized(rows * groups)
    var zeroPoints: [Float] = Self.uninitialized(scheme.symmetric ? 0 : rows * groups)
    let offset = Float(1 << (bits - 1))

    // The scale and zero point of a group for clipping factor `alpha` (1: the reference's).
    func parameters(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, alpha: Float) -> (Float, Float) {
      if scheme.symmetric {
        var amax: Float = 0
        for i in range { amax = max(amax, abs(values[i])) }
        let scale = round(alpha * amax / ((qmax - qmin) / 2))
        return (scale == 0 ? round.epsilon : scale, 0)
      }
      var low: Float = 0
      var high: Float = 0
      for i in range {
        low = min(low, values[i])
        high = max(high, values[i])
      }
      (low, high) = (alpha * low, alpha * high)
      let scale = round(round(high - low) / (qmax - qmin))
      if scale == 0 { return (round.epsilon, 0) }  // an all-zero group: every code is the zero point
      return (scale, (min(max(round(qmin - round(low / scale)), qmin), qmax)).rounded(.toNearestOrEven))
    }
    @inline(__always) func code(_ value: Float, _ scale: Float, _ zeroPoint: Float) -> Float {
      var scaled = round(value / scale)
      if !scheme.symmetric { scaled = round(scaled + zeroPoint) }
      return min(max(scaled, qmin), qmax).rounded(.toNearestOrEven)
    }

    if !searching {
      // Round-to-nearest: the C kernel (the same arithmetic, vectorised where the CPU
      // allows), rows in parallel.
      let dtypeCode = Self.kernelDType(dtype)
      let symmetric: Int32 = scheme.symmetric ? 1 : 0
      let epsilon = round.epsilon
      let error = packed.withUnsafeMutableBytes { packedOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          zeroPoints.withUnsafeMutableBufferPointer { zeroOut in
            nonisolated(unsafe) let (packedOut, scaleOut, zeroOut) = (packedOut, scaleOut, zeroOut)
            return Self.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
              let rowPacked = packedOut.baseAddress! + row * words * 4
              // 8-bit codes are already the packed bytes; narrower ones are packed after.
              let codes =
                bits == 8
                ? rowPacked.assumingMemoryBound(to: UInt8.self)
                : UnsafeMutablePointer<UInt8>.allocate(capacity: columns)
              defer { if bits != 8 { codes.deallocate() } }
              sck_quantize_int_groups(
                values.baseAddress, groups, group, Int32(bits), symmetric, dtypeCode, epsilon, codes,
                rowPacked.assumingMemoryBound(to: UInt32.self), scaleOut.baseAddress! + row * groups,
                symmetric == 0 ? zeroOut.baseAddress! + row * groups : nil, reconstruction.baseAddress)
            }
          }
        }
      }
      try Self.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: intOutputs(
          packed: packed, scales: scales, zeroPoints: zeroPoints, rows: rows, columns: columns, dtype: dtype),
        reconstruction: .measured(error))
    }

    let (error, baseline) = try Self.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
      row, values, reconstruction, alternative in
      for g in 0..<groups {
        let range = (g * group)..<(g * group + group)
        var (scale, zeroPoint) = parameters(values, range, alpha: 1)
        if searching {
          for i in range { alternative[i] = round(round(code(values[i], scale, zeroPoint) - zeroPoint) * scale) }
          var best = Self.squaredError(values, range) { alternative[$0] }
          for alpha in Self.clippingFactors.dropFirst() {
            let (s, z) = parameters(values, range, alpha: alpha)
            let candidate = Self.squaredError(values, range) { round(round(code(values[$0], s, z) - z) * s) }
            if candidate < best { (best, scale, zeroPoint) = (candidate, s, z) }
          }
        }
        scales[row * groups + g] = scale
        if !scheme.symmetric { zeroPoints[row * groups + g] = zeroPoint }
        for w in (range.lowerBound / perWord)..<(range.upperBound / perWord) {
          var word: UInt32 = 0
          for j in 0..<perWord {
            let i = w * perWord + j
            let q = code(values[i], scale, zeroPoint)
            word |= UInt32(q + offset) << UInt32(bits * j)
            reconstruction[i] = round(round(q - zeroPoint) * scale)
          }
          packed.withUnsafeMutableBytes {
            $0.storeBytes(of: word.littleEndian, toByteOffset: (row * words + w) * 4, as: UInt32.self)
          }
        }
      }
    }

    return TransformResult(
      outputs: intOutputs(
        packed: packed, scales: scales, zeroPoints: zeroPoints, rows: rows, columns: columns, dtype: dtype),
      reconstruction: .measured(error), baseline: baseline)
  }

  /// The pack-quantized outputs: packed codes, scales, packed zero points (asymmetric)
  /// and the shape.
  private func intOutputs(
    packed: [UInt8], scales: [Float], zeroPoints: [Float], rows: Int, columns: Int, dtype: DType
  ) -> [OutputData] {
    let scheme = configuration.scheme
    let bits = scheme.bits
    let perWord = 32 / bits
    let groups = scales.count / max(rows, 1)
    let offset = Float(1 << (bits - 1))
    var data: [OutputData] = [.owned(packed), .owned(Self.encode(scales, as: dtype))]
    if !scheme.symmetric {
      // Zero points are packed along the output dimension: word w of column g holds the
      // zero points of rows w * perWord ..< (w + 1) * perWord (the last word zero-padded).
      let zeroWords = (rows + perWord - 1) / perWord
      var result = [UInt8](repeating: 0, count: zeroWords * groups * 4)
      result.withUnsafeMutableBytes { dst in
        for w in 0..<zeroWords {
          for g in 0..<groups {
            var word: UInt32 = 0
            for j in 0..<perWord where w * perWord + j < rows {
              word |= UInt32(zeroPoints[(w * perWord + j) * groups + g] + offset) << UInt32(bits * j)
            }
            dst.storeBytes(of: word.littleEndian, toByteOffset: (w * groups + g) * 4, as: UInt32.self)
          }
        }
      }
      data.append(.owned(result))
    }
    data.append(.owned([Int64(rows), Int64(columns)].withUnsafeBytes { Array($0) }))
    return data

  }

  /// Calls `body` for each row of `input` with its values as Float32 and a buffer for the
  /// row's reconstruction, and accumulates the error between the two. Rows are decoded
  /// one at a time, so memory stays at one row beyond the outputs. Non-finite weights are
  /// rejected, naming the element.
  static func forEachRow(
    _ input: TensorInput, rows: Int, columns: Int, baseline: Bool = false,
    _ body: (Int, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) ->
      Void
  ) throws(SwiftCompressError) -> (error: ErrorAccumulator, baseline: ErrorAccumulator?) {
    let dtype = input.descriptor.dtype
    let rowBytes = columns * dtype.bitsPerElement / 8
    var values = [Float](repeating: 0, count: columns)
    var reconstruction = [Float](repeating: 0, count: columns)
    var alternative = [Float](repeating: 0, count: baseline ? columns : 0)
    var accumulator = ErrorAccumulator()
    var baselineAccumulator = ErrorAccumulator()
    for row in 0..<rows {
      try values.withUnsafeMutableBufferPointer { (v) throws(SwiftCompressError) in
        Float32Conversion.convert(
          UnsafeRawBufferPointer(rebasing: input.bytes[(row * rowBytes)..<((row + 1) * rowBytes)]), dtype: dtype,
          count: columns, into: v)
        if let bad = v.firstIndex(where: { !$0.isFinite }) {
          throw .invalidTensor(
            name: input.descriptor.name,
            reason: "element [\(row), \(bad)] is \(v[bad]); quantization needs finite weights\(nonFiniteAdvice)")
        }
        reconstruction.withUnsafeMutableBufferPointer { r in
          alternative.withUnsafeMutableBufferPointer { b in
            body(row, UnsafeBufferPointer(v), r, b)
            accumulator.add(reference: UnsafeBufferPointer(v), reconstruction: UnsafeBufferPointer(r))
            if baseline {
              baselineAccumulator.add(reference: UnsafeBufferPointer(v), reconstruction: UnsafeBufferPointer(b))
            }
          }
        }
      }
    }
    return (accumulator, baseline ? baselineAccumulator : nil)
  }

  /// The dtype code the C kernels take: 0 Float32, 1 BFloat16, 2 Float16.
  static func kernelDType(_ dtype: DType) -> Int32 {
    dtype == .bf16 ? 1 : dtype == .f16 ? 2 : 0
  }

  /// Calls `body` for every row, in parallel over fixed blocks of 64 rows, with the row's
  /// Float32 values and a buffer for its reconstruction, and returns the error summed
  /// in block order (so independent of the thread count). `body` must write only what
  /// belongs to its row. Aligned Float32 rows are passed straight from the mapping; other
  /// dtypes are converted into a buffer per block. Kernels are safe on NaN and infinite
  /// input (their clamps map them to finite codes), so non-finite weights are found in
  /// the error sums; callers then reject them with `rejectNonFinite`.
  static func parallelRows(
    _ input: TensorInput, rows: Int, columns: Int, measure: Bool = true,
    _ body: @Sendable (Int, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void
  ) -> ErrorAccumulator {
    let direct = input.rowsReadInPlace
    let blockRows = 64
    let blocks = (rows + blockRows - 1) / blockRows
    var accumulators = [ErrorAccumulator](repeating: ErrorAccumulator(), count: blocks)
    accumulators.withUnsafeMutableBufferPointer { errorOut in
      nonisolated(unsafe) let errorOut = errorOut
      Parallel.perform(iterations: blocks) { block in
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: direct ? 0 : columns)
        let reconstruction = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
        defer {
          values.deallocate()
          reconstruction.deallocate()
        }
        var accumulator = ErrorAccumulator()
        for row in (block * blockRows)..<min(rows, (block + 1) * blockRows) {
          let rowValues = input.float32Row(row, columns: columns, scratch: values)
          body(row, rowValues, reconstruction)
          if measure { accumulator.add(reference: rowValues, reconstruction: UnsafeBufferPointer(reconstruction)) }
        }
        errorOut[block] = accumulator
      }
    }
    var error = ErrorAccumulator()
    for accumulator in accumulators { error.merge(accumulator) }
    return error
  }

  /// An array of `count` elements left uninitialised, for outputs a kernel fills entirely
  /// (zero-filling them first costs a pass over memory).
  static func uninitialized<T: BitwiseCopyable>(_ count: Int) -> [T] {
    [T](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
  }

  /// Throws when `error` (from `parallelRows`) met non-finite weights, naming the first.
  static func rejectNonFinite(
    _ error: ErrorAccumulator, _ input: TensorInput, rows: Int, columns: Int, purpose: String = "quantization"
  ) throws(SwiftCompressError) {
    if error.nonFinite > 0 { try checkFinite(input, rows: rows, columns: columns, purpose: purpose) }
  }

  /// max |w| over the finite weights of `input`, in parallel over chunks.
  static func absMax(_ input: TensorInput) -> Float {
    let count = input.elementCount
    let dtype = input.descriptor.dtype
    let chunks = (count + chunkElementCount - 1) / chunkElementCount
    let direct = dtype == .f32 && Int(bitPattern: input.bytes.baseAddress) % MemoryLayout<Float>.alignment == 0
    var maxima = [Float](repeating: 0, count: chunks)
    maxima.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: chunks) { chunk in
        let start = chunk * chunkElementCount
        let n = min(chunkElementCount, count - start)
        var nonfinite: UInt64 = 0
        if direct, let base = input.bytes.baseAddress {
          out[chunk] = sck_absmax_f32(base.assumingMemoryBound(to: Float.self) + start, n, &nonfinite)
          return
        }
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { scratch.deallocate() }
        let bits = dtype.bitsPerElement
        Float32Conversion.convert(
          UnsafeRawBufferPointer(rebasing: input.bytes[(start * bits / 8)..<((start + n) * bits / 8)]), dtype: dtype,
          count: n, into: scratch)
        out[chunk] = sck_absmax_f32(scratch.baseAddress, n, &nonfinite)
      }
    }
    return maxima.max() ?? 0
  }

  /// Rejects NaN and infinite weights, naming the first one.
  static func checkFinite(_ input: TensorInput, rows: Int, columns: Int, purpose: String = "quantization")
    throws(SwiftCompressError)
  {
    var first: Int?
    forEachChunk(of: input, count: rows * columns) { start, chunk in
      guard first == nil, let base = chunk.baseAddress else { return }
      var stats = sck_stats()
      sck_stats_f32(base, chunk.count, &stats)
      if stats.nans + stats.infs > 0 { first = start + (chunk.firstIndex { !$0.isFinite } ?? 0) }
    }
    if let first {
      let value = Float32Conversion.floats(
        UnsafeRawBufferPointer(
          rebasing: input.bytes[(first * input.descriptor.dtype.bitsPerElement / 8)...]), dtype: input.descriptor.dtype,
        count: 1)[0]
      throw .invalidTensor(
        name: input.descriptor.name,
        reason:
          "element [\(first / columns), \(first % columns)] is \(value); \(purpose) needs finite weights\(nonFiniteAdvice)"
      )
    }
  }

  /// Squared error of a candidate encoding of `values[range]`, `decode` giving each
  /// element's reconstruction.
  @inline(__always)
  static func squaredError(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, _ decode: (Int) -> Float)
    -> Double
  {
    var sum = 0.0
    for i in range {
      let d = Double(values[i]) - Double(decode(i))
      sum += d * d
    }
    return sum
  }

  /// Clipping factors tried by the MSE search for integer and FP8 scales: 1 (the
  /// reference's scale) down to 0.5 in steps of 0.02. The first, 1, wins ties.
  static let clippingFactors: [Float] = (0...25).map { 1 - Float($0) * 0.02 }

  /// FP8 E4M3 with one scale per row or per 128 x 128 block: s = amax / 448 and
  /// q = e4m3(clamp(W / s, +-448)), each step in W's dtype. With the MSE search, the
  /// block's scale is alpha * amax / 448 for the best clipping factor alpha.
  private func float8(_ input: TensorInput, rows: Int, columns: Int, round: DTypeRounding) throws(SwiftCompressError)
    -> TransformResult
  {
    let block = configuration.scheme == .fp8Dynamic ? (rows: 1, columns: columns) : (rows: 128, columns: 128)
    let blockRows = (rows + block.rows - 1) / block.rows
    let blockColumns = (columns + block.columns - 1) / block.columns
    let searching = configuration.scaleSearch == .mse
    let table = Float32Conversion.e4m3Table
    func blockIndex(_ row: Int, _ column: Int) -> Int { (row / block.rows) * blockColumns + column / block.columns }
    @Sendable func scale(_ amax: Float, _ alpha: Float) -> Float {
      let s = round(alpha * amax / 448)
      return s == 0 ? round.epsilon : s
    }
    func decode(_ value: Float, _ scale: Float) -> (UInt8, Float) {
      let code = Float32Conversion.e4m3Code(min(max(round(value / scale), -448), 448))
      return (code, round(table[Int(code)] * scale))
    }
    if configuration.scheme == .fp8Dynamic && !searching {
      // One scale per row: each row's amax, scale and codes in a single pass.
      var codes: [UInt8] = Self.uninitialized(rows * columns)
      var scales: [Float] = Self.uninitialized(rows)
      let dtypeCode = Self.kernelDType(input.descriptor.dtype)
      let error = codes.withUnsafeMutableBufferPointer { codeOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          nonisolated(unsafe) let (codeOut, scaleOut) = (codeOut, scaleOut)
          return Self.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            var nonfinite: UInt64 = 0
            scaleOut[row] = scale(sck_absmax_f32(values.baseAddress, columns, &nonfinite), 1)
            sck_quantize_fp8(
              values.baseAddress, columns, scaleOut.baseAddress! + row, columns, dtypeCode,
              codeOut.baseAddress! + row * columns, reconstruction.baseAddress)
          }
        }
      }
      try Self.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: [.owned(codes), .owned(Self.encode(scales, as: input.descriptor.dtype))],
        reconstruction: .measured(error))
    }
    // First pass: each row's amax per column block, in parallel; then the amax of every
    // block (FP8_BLOCK blocks span 128 rows).
    // (Non-finite weights are left out here and rejected by the quantizing pass.)
    var rowAmax = [Float](repeating: 0, count: rows * blockColumns)
    rowAmax.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      _ = Self.parallelRows(input, rows: rows, columns: columns, measure: false) { row, values, _ in
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
      let factors = Self.clippingFactors
      var errors = [Double](repeating: 0, count: amax.count * factors.count)
      _ = try Self.forEachRow(input, rows: rows, columns: columns) { row, values, _, _ in
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
    var codes: [UInt8] = Self.uninitialized(rows * columns)  // every element written below
    if !searching {
      let dtypeCode = Self.kernelDType(input.descriptor.dtype)
      let error = codes.withUnsafeMutableBufferPointer { codeOut in
        scales.withUnsafeBufferPointer { scaleIn in
          nonisolated(unsafe) let (codeOut, scaleIn) = (codeOut, scaleIn)
          return Self.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_fp8(
              values.baseAddress, columns, scaleIn.baseAddress! + (row / block.rows) * blockColumns, block.columns,
              dtypeCode, codeOut.baseAddress! + row * columns, reconstruction.baseAddress)
          }
        }
      }
      try Self.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(
        outputs: [.owned(codes), .owned(Self.encode(scales, as: input.descriptor.dtype))],
        reconstruction: .measured(error))
    }
    let (error, baseline) = try Self.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
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
      outputs: [.owned(codes), .owned(Self.encode(scales, as: input.descriptor.dtype))],
      reconstruction: .measured(error), baseline: baseline)
  }

  /// MXFP4 (OCP microscaling): per 32 values an E8M0 exponent e = 127 + floor(log2(m)) - 2,
  /// where m is the group's amax with its mantissa rounded to a power of two as the
  /// reference does (up when the mantissa is at least 1.75), and E2M1 codes of
  /// clamp(W / 2^(e-127), +-6) rounded to nearest even; two codes per byte, even element
  /// in the low nibble. The MSE search also tries e - 1 and e + 1.
  private func mxfp4(_ input: TensorInput, rows: Int, columns: Int, round: DTypeRounding) throws(SwiftCompressError)
    -> TransformResult
  {
    let groups = columns / 32
    let searching = configuration.scaleSearch == .mse
    var exponents: [UInt8] = Self.uninitialized(rows * groups)  // every element written below
    // The search ORs nibbles in; the kernel writes whole bytes.
    var packed = searching ? [UInt8](repeating: 0, count: rows * columns / 2) : Self.uninitialized(rows * columns / 2)
    func power(_ e: Int) -> Float { Float(sign: .plus, exponent: e - 127, significand: 1) }
    func code(_ value: Float, _ scale: Float) -> UInt8 { Self.e2m1Code(min(max(round(value / scale), -6), 6)) }
    if !searching {
      let dtypeCode = Self.kernelDType(round.dtype)
      let error = packed.withUnsafeMutableBufferPointer { packedOut in
        exponents.withUnsafeMutableBufferPointer { exponentOut in
          nonisolated(unsafe) let (packedOut, exponentOut) = (packedOut, exponentOut)
          return Self.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_mxfp4(
              values.baseAddress, groups, dtypeCode, exponentOut.baseAddress! + row * groups,
              packedOut.baseAddress! + row * columns / 2, reconstruction.baseAddress)
          }
        }
      }
      try Self.rejectNonFinite(error, input, rows: rows, columns: columns)
      return TransformResult(outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error))
    }
    let (error, baseline) = try Self.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
      row, values, reconstruction, alternative in
      for g in 0..<groups {
        let range = (g * 32)..<(g * 32 + 32)
        var amax: Float = 0
        for i in range { amax = max(amax, abs(values[i])) }
        var e = Int(Self.mxExponent(amax))
        if searching {
          let reference = e
          for i in range {
            alternative[i] = Float32Conversion.e2m1Table[Int(code(values[i], power(reference)))] * power(reference)
          }
          var best = Self.squaredError(values, range) { alternative[$0] }
          for candidate in [reference - 1, reference + 1] where (0...254).contains(candidate) {
            let s = power(candidate)
            let error = Self.squaredError(values, range) { Float32Conversion.e2m1Table[Int(code(values[$0], s))] * s }
            if error < best { (best, e) = (error, candidate) }
          }
        }
        exponents[row * groups + g] = UInt8(e)
        let scale = power(e)
        for i in range {
          let c = code(values[i], scale)
          packed[(row * columns + i) / 2] |= i % 2 == 0 ? c : c << 4
          reconstruction[i] = Float32Conversion.e2m1Table[Int(c)] * scale
        }
      }
    }
    return TransformResult(
      outputs: [.owned(packed), .owned(exponents)], reconstruction: .measured(error), baseline: baseline)
  }

  /// NVFP4: per 16 values an E4M3 scale e4m3(g x r(amax / 6)) (0 becomes 0.125, the
  /// E4M3 epsilon, as in the reference), and E2M1 codes of clamp(W / (scale / g), +-6),
  /// the division in Float32; g is stored as F32 [1]. The MSE search also tries the
  /// three smaller E4M3 scales and the next larger one.
  private func nvfp4(_ input: TensorInput, rows: Int, columns: Int, globalScale: Float) throws(SwiftCompressError)
    -> TransformResult
  {
    let round = DTypeRounding(input.descriptor.dtype)
    let groups = columns / 16
    let searching = configuration.scaleSearch == .mse
    var scales: [UInt8] = Self.uninitialized(rows * groups)  // every element written below
    // The search ORs nibbles in; the kernel writes whole bytes.
    var packed = searching ? [UInt8](repeating: 0, count: rows * columns / 2) : Self.uninitialized(rows * columns / 2)
    let table = Float32Conversion.e4m3Table
    func code(_ value: Float, _ effective: Float) -> UInt8 { Self.e2m1Code(min(max(value / effective, -6), 6)) }
    func decode(_ value: Float, _ effective: Float) -> Float {
      Float32Conversion.e2m1Table[Int(code(value, effective))] * effective
    }
    if !searching {
      let dtypeCode = Self.kernelDType(input.descriptor.dtype)
      let error = packed.withUnsafeMutableBufferPointer { packedOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          nonisolated(unsafe) let (packedOut, scaleOut) = (packedOut, scaleOut)
          return Self.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_nvfp4(
              values.baseAddress, groups, globalScale, dtypeCode, scaleOut.baseAddress! + row * groups,
              packedOut.baseAddress! + row * columns / 2, reconstruction.baseAddress)
          }
        }
      }
      try Self.rejectNonFinite(error, input, rows: rows, columns: columns)
      let global = [globalScale].withUnsafeBytes { Array($0) }
      return TransformResult(
        outputs: [.owned(packed), .owned(scales), .owned(global)], reconstruction: .measured(error))
    }
    let (error, baseline) = try Self.forEachRow(input, rows: rows, columns: columns, baseline: searching) {
      row, values, reconstruction, alternative in
      for g in 0..<groups {
        let range = (g * 16)..<(g * 16 + 16)
        var amax: Float = 0
        for i in range { amax = max(amax, abs(values[i])) }
        var scaleCode = Float32Conversion.e4m3Code(min(max(globalScale * round(amax / 6), -448), 448))
        if table[Int(scaleCode)] == 0 { scaleCode = Float32Conversion.e4m3Code(0.125) }
        if searching {
          let reference = Int(scaleCode)
          let effective = table[reference] / globalScale
          for i in range { alternative[i] = decode(values[i], effective) }
          var best = Self.squaredError(values, range) { alternative[$0] }
          // Positive E4M3 codes 1...0x7E are ordered by value.
          for candidate in [reference - 1, reference - 2, reference - 3, reference + 1]
          where (1...0x7E).contains(candidate) {
            let e = table[candidate] / globalScale
            let error = Self.squaredError(values, range) { decode(values[$0], e) }
            if error < best { (best, scaleCode) = (error, UInt8(candidate)) }
          }
        }
        scales[row * groups + g] = scaleCode
        let effective = table[Int(scaleCode)] / globalScale
        for i in range {
          let fp4 = code(values[i], effective)
          packed[(row * columns + i) / 2] |= i % 2 == 0 ? fp4 : fp4 << 4
          reconstruction[i] = Float32Conversion.e2m1Table[Int(fp4)] * effective
        }
      }
    }
    let global = [globalScale].withUnsafeBytes { Array($0) }
    return TransformResult(
      outputs: [.owned(packed), .owned(scales), .owned(global)], reconstruction: .measured(error), baseline: baseline)
  }

  /// The E8M0 exponent of an MXFP4 group with absolute maximum `amax` (`sck_mx_exponent`).
  static func mxExponent(_ amax: Float) -> UInt8 {
    sck_mx_exponent(amax)
  }

  /// The E2M1 code of `x` (already clamped to +-6), ties to even; the sign is kept for zero.
  static func e2m1Code(_ x: Float) -> UInt8 {
    let sign: UInt8 = x.sign == .minus ? 0x8 : 0
    let a = abs(x)
    let magnitude: UInt8 =
      a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7
    return sign | magnitude
  }

  /// Float32 values (already representable in `dtype`) stored as `dtype`.
  static func encode(_ values: [Float], as dtype: DType) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: values.count * dtype.bitsPerElement / 8)
    values.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBytes { _ = Float32Conversion.encode(src, as: dtype, into: $0) }
    }
    return out
  }

  /// config.json with `quantization_config`, written as llm-compressor writes it
  /// (sorted keys, two-space indent, no final newline).
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    config.setting("quantization_config", to: quantizationConfig).map { JSONText.pretty($0, trailingNewline: false) }
  }

  /// The `quantization_config` block compressed-tensors 0.20 writes for this scheme.
  public var quantizationConfig: JSONValue {
    let scheme = configuration.scheme
    let perChannelInteger = configuration.groupSize == 0 && !scheme.isFloat8 && !scheme.isFP4
    var weights: [JSONMember] = [
      JSONMember("dynamic", .bool(false)),
      JSONMember(
        "group_size",
        scheme.isFloat8 || perChannelInteger
          ? .null
          : .number(scheme == .mxfp4 ? "32" : scheme == .nvfp4 ? "16" : String(configuration.groupSize))),
      JSONMember("num_bits", .number(String(scheme.bits))),
      JSONMember(
        "strategy",
        .string(
          scheme == .fp8Dynamic || perChannelInteger
            ? "channel" : scheme == .fp8Block ? "block" : scheme == .nvfp4 ? "tensor_group" : "group")),
      JSONMember("symmetric", .bool(scheme.symmetric)),
      JSONMember("type", .string(scheme.isFloat8 || scheme.isFP4 ? "float" : "int")),
    ]
    if scheme == .mxfp4 {
      weights.append(JSONMember("scale_dtype", .string("torch.uint8")))
    }
    if scheme == .nvfp4 {
      weights.append(JSONMember("scale_dtype", .string("torch.float8_e4m3fn")))
    }
    if scheme == .fp8Block {
      weights.append(JSONMember("block_structure", .array([.number("128"), .number("128")])))
    }
    // FP8 presets also declare dynamic per-token (or per-group) FP8 activations.
    let activations: JSONValue =
      scheme.isFloat8
      ? .object([
        JSONMember("dynamic", .bool(true)),
        JSONMember("group_size", scheme == .fp8Block ? .number("128") : .null),
        JSONMember("num_bits", .number("8")),
        JSONMember("strategy", .string(scheme == .fp8Block ? "group" : "token")),
        JSONMember("symmetric", .bool(true)), JSONMember("type", .string("float")),
      ]) : .null
    let group: JSONValue = .object([
      JSONMember("format", .string(scheme.format)), JSONMember("input_activations", activations),
      JSONMember("output_activations", .null), JSONMember("targets", .array([.string("Linear")])),
      JSONMember("weights", .object(weights)),
    ])
    return .object([
      // A per-channel integer scheme is not a preset: the reference names its group config_group_0.
      JSONMember(
        "config_groups",
        .object([
          JSONMember(
            perChannelInteger ? "config_group_0" : scheme.rawValue, group)
        ])),
      JSONMember("format", .string(scheme.format)), JSONMember("global_compression_ratio", .null),
      JSONMember("ignore", .array(configuration.ignore.map { .string($0) })),
      JSONMember("kv_cache_scheme", .null), JSONMember("moe_sparsity_config", .null),
      JSONMember("quant_method", .string("compressed-tensors")),
      JSONMember("quantization_status", .string("compressed")), JSONMember("transform_config", .object([])),
      JSONMember("version", .string(Self.compressedTensorsVersion)),
    ])
  }
}
