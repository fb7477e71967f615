import CheckpointIO
import Foundation

/// Turns a compressed-tensors checkpoint (every format `quantize` writes) back into
/// dense weights, with the reference dequantizer's arithmetic: (q - zp) * s in the
/// scale's dtype for integer and FP8 formats, code x 2^(e-127) for MXFP4, and for NVFP4
/// code x (scale / g) rounded to BF16 (the reference decompressor's working dtype, even
/// for an F32 model); then stored as the chosen dtype. `quantization_config` is removed from config.json.
public struct DecompressPass: CompressionPass {
  public struct Configuration: Codable, Sendable, Equatable {
    /// The dtype of the dense weights; nil: the config's `torch_dtype` (F32 when absent).
    public var dtype: DType?
    public init(dtype: DType? = nil) {
      self.dtype = dtype
    }
  }

  /// What `prepared(for:)` learns from config.json.
  struct Format: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
      case packed(bits: Int)
      case float8
      case mxfp4
      case nvfp4
      /// compressed-tensors' sparse-bitmask or sparse-24-bitmask (values are exact).
      case sparseBitmask
      /// factorize's weight_a x weight_b.
      case lowRank
    }
    var kind: Kind
    /// FP8 scale block: rows x columns per scale (nil: one scale per row).
    var block: [Int]?
    var target: DType
    /// Sparse formats: the dense shape of each module, read from `<module>.shape`.
    var sparseShapes: [String: [Int]] = [:]
  }

  /// factorize output: each module's input width, from its weight_b.
  var lowRankColumns: [String: Int] = [:]

  public static let identifier = "decompress"
  public static let summary = "dequantize a compressed-tensors checkpoint back to dense weights"
  public let configuration: Configuration
  let format: Format?

  public init(configuration: Configuration = Configuration()) throws(SwiftCompressError) {
    if let dtype = configuration.dtype, !Float32Conversion.encodableDTypes.contains(dtype) {
      throw .invalidConfiguration(
        pass: Self.identifier, reason: "cannot write \(dtype.rawValue); choose F32, BF16, F16 or F64")
    }
    self.configuration = configuration
    format = nil
  }

  init(configuration: Configuration, format: Format) {
    self.configuration = configuration
    self.format = format
  }

  public var usesDefaultSelection: Bool { false }

  /// The output has no reference to be compared with (the original is not an input).
  public var measuresError: Bool { false }

  /// The dense weights written are the model's weights, not the codes and scales read.
  public var countsParametersOfOutputs: Bool { true }

  /// Reads `quantization_config` from the checkpoint's config.json.
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> DecompressPass {
    // config.json, or for a checkpoint written without one, the records its weights'
    // __metadata__ carries.
    let config = LoaderContract.config(of: checkpoint)
    let path = LoaderContract.configPath(of: checkpoint)
    if config?["quantization_config"] == nil, config?[FactorizePass.configKey] != nil {
      var pass = DecompressPass(
        configuration: configuration, format: Format(kind: .lowRank, block: nil, target: configuration.dtype ?? .f32))
      for tensor in checkpoint.tensors where tensor.name.hasSuffix(".weight_b") && tensor.info.shape.count == 2 {
        pass.lowRankColumns[String(tensor.name.dropLast(".weight_b".count))] = tensor.info.shape[1]
      }
      return try pass.withPrimaries(checkpoint)
    }
    guard let config, let quantization = config["quantization_config"] else {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "has no quantization_config (in config.json, or without one in its weights' __metadata__): it is not a compressed-tensors checkpoint"
      )
    }
    let formatName = quantization["format"]?.stringValue ?? ""
    let weights = quantization["config_groups"]?.members?.first?.value["weights"]
    let bits = weights?["num_bits"]?.uint64Value.map(Int.init) ?? 0
    let sparseFormat = quantization["sparsity_config"]?["format"]?.stringValue ?? ""
    if ["sparse-bitmask", "sparse-24-bitmask"].contains(sparseFormat) {
      guard formatName.isEmpty || formatName == "dense" else {
        throw .invalidFile(
          path: path, reason: "sparse weights that are also quantized ('\(formatName)') are not supported by decompress"
        )
      }
      return try DecompressPass(
        configuration: configuration,
        format: Format(
          kind: .sparseBitmask, block: nil, target: configuration.dtype ?? .f32,
          sparseShapes: try Self.sparseShapes(checkpoint))
      ).withPrimaries(checkpoint)
    }
    let kind: Format.Kind
    switch formatName {
    case "pack-quantized" where bits == 4 || bits == 8: kind = .packed(bits: bits)
    case "float-quantized" where bits == 8: kind = .float8
    case "mxfp4-pack-quantized": kind = .mxfp4
    case "nvfp4-pack-quantized": kind = .nvfp4
    default:
      throw .invalidFile(
        path: path,
        reason:
          "quantization format '\(formatName)' with \(bits)-bit weights is not supported; supported: pack-quantized (4 or 8 bits), float-quantized (FP8), mxfp4-pack-quantized, nvfp4-pack-quantized"
      )
    }
    let torchDType: DType? =
      switch config["torch_dtype"]?.stringValue ?? config["dtype"]?.stringValue {
      case "bfloat16": .bf16
      case "float16": .f16
      case "float32": .f32
      default: nil
      }
    var pass = DecompressPass(
      configuration: configuration,
      format: Format(
        kind: kind,
        block: weights?["block_structure"]?.arrayValue?.compactMap { $0.uint64Value.map(Int.init) },
        target: configuration.dtype ?? torchDType ?? .f32))
    if config[FactorizePass.configKey] != nil, let format = pass.format {
      // factorize then quantize: the factors are multiplied out too.
      pass.quantizedFactors = true
      for tensor in checkpoint.tensors {
        let descriptor = TensorDescriptor(tensor.info)
        guard let range = tensor.name.range(of: ".weight_b", options: .backwards),
          [".weight_b", ".weight_b_packed"].contains(String(tensor.name[range.lowerBound...])),
          let columns = Self.columns(ofStored: descriptor, format: format)
        else { continue }
        pass.lowRankColumns[String(tensor.name[..<range.lowerBound])] = columns
      }
    }
    return try pass.withPrimaries(checkpoint)
  }

  /// The tensors that stand for a dense weight (each is planned into one), so that
  /// `planned(transforming:)` can tell whether `--include`/`--exclude` left some compressed.
  private func withPrimaries(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> DecompressPass {
    var pass = self
    for tensor in checkpoint.tensors {
      if case .transform(let outputs, _) = try plan(TensorDescriptor(tensor.info)), !outputs.isEmpty {
        pass.primaries.insert(tensor.name)
      }
    }
    return pass
  }

  /// Tensors that decompress into a dense weight.
  var primaries: Set<String> = []
  /// The modules whose weight this run makes dense; nil when it is all of them.
  var partial: Set<String>?

  /// With `--include`/`--exclude` leaving some weights compressed, config.json keeps its
  /// records (the modules made dense join `ignore`, and leave the factorization record).
  public func planned(transforming tensors: [TensorDescriptor]) -> DecompressPass {
    var pass = self
    let done = Set(tensors.map(\.name)).intersection(primaries)
    guard done.count < primaries.count else { return pass }
    pass.partial = Set(
      done.map { name in
        for suffix in [".weight_a_packed", ".weight_a", ".weight_packed", ".weight", ".compressed"]
        where name.hasSuffix(suffix) {
          return String(name.dropLast(suffix.count))
        }
        return name
      })
    return pass
  }

  /// factorize then quantize: weight_a and weight_b are quantized and multiplied out.
  var quantizedFactors = false

  static let companionSuffixes = ["_scale", "_zero_point", "_shape", "_global_scale"]

  /// The dense shape of every bitmask-stored module, from its `<module>.shape` tensor.
  static func sparseShapes(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> [String: [Int]] {
    var shapes: [String: [Int]] = [:]
    for tensor in checkpoint.tensors where tensor.name.hasSuffix(".shape") {
      let module = String(tensor.name.dropLast(".shape".count))
      guard checkpoint.tensor(named: module + ".compressed") != nil else { continue }
      guard tensor.info.dtype == .i64, tensor.info.elementCount == 2 else {
        throw .invalidTensor(
          name: tensor.name, reason: "\(tensor.info.dtype.rawValue) \(tensor.info.shape) is not an I64 pair of sizes")
      }
      let bytes = checkpoint.bytes(of: tensor)
      let dims = (0..<2).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
      guard dims.allSatisfy({ $0 >= 0 && $0 < 1 << 40 }) else {
        throw .invalidTensor(name: tensor.name, reason: "holds the impossible shape \(dims)")
      }
      shapes[module] = dims
    }
    return shapes
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    guard let format else {
      throw .passBrokePlan(pass: Self.identifier, tensor: tensor.name, reason: "planned before prepared(for:)")
    }
    let name = tensor.name
    if case .lowRank = format.kind {
      if name.hasSuffix(".weight_b") { return .transform(outputs: [], note: "folded into the dense weight") }
      guard name.hasSuffix(".weight_a"), tensor.shape.count == 2 else { return .keep(reason: "not factorized") }
      let module = String(name.dropLast(".weight_a".count))
      guard let columns = lowRankColumns[module] else {
        throw .invalidTensor(name: module + ".weight_b", reason: "missing: \(name) cannot be multiplied out without it")
      }
      return .transform(
        outputs: [
          PlannedTensor(
            name: module + ".weight", dtype: configuration.dtype ?? tensor.dtype, shape: [tensor.shape[0], columns])
        ], note: "weight_a x weight_b")
    }
    if case .sparseBitmask = format.kind {
      for suffix in [".compressed", ".bitmask", ".shape", ".row_offsets"] where name.hasSuffix(suffix) {
        let module = String(name.dropLast(suffix.count))
        guard let shape = format.sparseShapes[module] else { continue }
        if suffix != ".compressed" { return .transform(outputs: [], note: "folded into the dense weight") }
        return .transform(
          outputs: [PlannedTensor(name: module + ".weight", dtype: configuration.dtype ?? tensor.dtype, shape: shape)],
          note: "bitmask expanded")
      }
      return .keep(reason: "not sparse")
    }
    if name.hasSuffix(".lowrank_a") || name.hasSuffix(".lowrank_b") {
      return .transform(outputs: [], note: "added to the dequantized weight")
    }
    if quantizedFactors, Self.columns(ofStored: tensor, format: format) != nil {
      if name.hasSuffix(".weight_b") || name.hasSuffix(".weight_b_packed") {
        return .transform(outputs: [], note: "folded into the dense weight")
      }
      if let range = name.range(of: ".weight_a", options: .backwards),
        name.hasSuffix(".weight_a") || name.hasSuffix(".weight_a_packed")
      {
        let module = String(name[..<range.lowerBound])
        guard let columns = lowRankColumns[module] else {
          throw .invalidTensor(
            name: module + ".weight_b", reason: "missing: \(name) cannot be multiplied out without it")
        }
        return .transform(
          outputs: [PlannedTensor(name: module + ".weight", dtype: format.target, shape: [tensor.shape[0], columns])],
          note: "dequantized weight_a x weight_b")
      }
    }
    if Self.isWeight(name, suffix: "_packed"), tensor.shape.count == 2 {
      let base = String(name.dropLast("_packed".count))
      let columns: Int
      switch format.kind {
      case .packed(let bits): columns = tensor.shape[1] * 32 / bits
      case .mxfp4, .nvfp4: columns = tensor.shape[1] * 2
      case .float8, .sparseBitmask, .lowRank: return .keep(reason: "not part of a float-quantized checkpoint")
      }
      return .transform(
        outputs: [PlannedTensor(name: base, dtype: format.target, shape: [tensor.shape[0], columns])],
        note: "dequantized")
    }
    if case .float8 = format.kind, Self.isWeight(name, suffix: ""), tensor.dtype == .f8E4M3 {
      return .transform(
        outputs: [PlannedTensor(name: name, dtype: format.target, shape: tensor.shape)], note: "dequantized")
    }
    if name.range(of: #"\.weight(_a|_b)?(_scale|_zero_point|_shape|_global_scale)$"#, options: .regularExpression)
      != nil
    {
      return .transform(outputs: [], note: "folded into the dequantized weight")
    }
    return .keep(reason: "not quantized")
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    guard let format, !outputs.isEmpty else { return TransformResult(outputs: [], reconstruction: .notApplicable) }
    let name = input.descriptor.name
    if case .lowRank = format.kind {
      let module = String(name.dropLast(".weight_a".count))
      guard let b = input.companion(named: module + ".weight_b") else {
        throw .invalidTensor(name: module + ".weight_b", reason: "missing: \(name) cannot be multiplied out without it")
      }
      let (rows, k) = (input.descriptor.shape[0], input.descriptor.shape[1])
      guard b.descriptor.shape.count == 2, b.descriptor.shape[0] == k else {
        throw .invalidTensor(
          name: module + ".weight_b", reason: "shape \(b.descriptor.shape) does not follow weight_a's \([rows, k])")
      }
      let dense: [Float]
      do {
        dense = try FactorizePass.product(
          a: input.floats(), b: b.floats(), rows: rows, rank: k, columns: b.descriptor.shape[1])
      } catch {
        throw .invalidTensor(name: name, reason: "BLAS failed: \(error)")
      }
      return TransformResult(
        outputs: [.owned(QuantizePass.encode(dense, as: outputs[0].dtype))], reconstruction: .notApplicable)
    }
    if case .sparseBitmask = format.kind {
      let module = String(name.dropLast(".compressed".count))
      guard let bitmask = input.companion(named: module + ".bitmask") else {
        throw .invalidTensor(name: module + ".bitmask", reason: "missing: \(name) cannot be expanded without it")
      }
      let dense = try SparseBitmask.decode(
        name: module + ".weight", values: input, bitmask: bitmask, rows: outputs[0].shape[0],
        columns: outputs[0].shape[1])
      if outputs[0].dtype == input.descriptor.dtype {
        return TransformResult(outputs: [.owned(dense)], reconstruction: .notApplicable)
      }
      let floats = dense.withUnsafeBytes {
        Float32Conversion.floats($0, dtype: input.descriptor.dtype, count: outputs[0].elementCount ?? 0)
      }
      return TransformResult(
        outputs: [.owned(QuantizePass.encode(floats, as: outputs[0].dtype))], reconstruction: .notApplicable)
    }
    // The weight's name: <module>.weight, or a factor <module>.weight_a / .weight_b.
    let base = name.hasSuffix("_packed") ? String(name.dropLast("_packed".count)) : name
    let (rows, columns) = (outputs[0].shape[0], outputs[0].shape[1])
    if quantizedFactors, base.hasSuffix(".weight_a") {
      // factorize then quantize: dequantize both factors and multiply them out.
      let module = String(base.dropLast(".weight_a".count))
      let k = Self.columns(ofStored: input.descriptor, format: format) ?? 0
      guard
        let b = input.companion(named: module + ".weight_b_packed") ?? input.companion(named: module + ".weight_b")
      else {
        throw .invalidTensor(name: module + ".weight_b", reason: "missing: \(name) cannot be multiplied out without it")
      }
      let a = try dequantized(input, base: base, rows: rows, columns: k, format: format, lookup: input.companion)
      let bValues = try dequantized(
        b, base: module + ".weight_b", rows: k, columns: columns, format: format, lookup: input.companion)
      let dense: [Float]
      do {
        dense = try FactorizePass.product(a: a, b: bValues, rows: rows, rank: k, columns: columns)
      } catch {
        throw .invalidTensor(name: name, reason: "BLAS failed: \(error)")
      }
      return TransformResult(
        outputs: [.owned(QuantizePass.encode(dense, as: outputs[0].dtype))], reconstruction: .notApplicable)
    }
    var dense = try dequantized(
      input, base: base, rows: rows, columns: columns, format: format, lookup: input.companion)
    if base.hasSuffix(".weight") {
      let module = String(base.dropLast(".weight".count))
      try LowRankResidualPass.addLowRank(module: module, of: input, to: &dense, rows: rows, columns: columns)
    }
    return TransformResult(
      outputs: [.owned(QuantizePass.encode(dense, as: outputs[0].dtype))], reconstruction: .notApplicable)
  }

  /// The dense columns of a stored quantized weight (packed codes or FP8 values).
  static func columns(ofStored tensor: TensorDescriptor, format: Format) -> Int? {
    guard tensor.shape.count == 2 else { return nil }
    switch format.kind {
    case .packed(let bits): return tensor.name.hasSuffix("_packed") ? tensor.shape[1] * 32 / bits : nil
    case .mxfp4, .nvfp4: return tensor.name.hasSuffix("_packed") ? tensor.shape[1] * 2 : nil
    case .float8: return tensor.dtype == .f8E4M3 ? tensor.shape[1] : nil
    case .sparseBitmask, .lowRank: return nil
    }
  }

  /// The dense values of the quantized weight `input` (named after `base`), with its
  /// companions (`base`_scale, ...) found through `lookup`.
  private func dequantized(
    _ input: TensorInput, base: String, rows: Int, columns: Int, format: Format, lookup: (String) -> TensorInput?
  ) throws(SwiftCompressError) -> [Float] {
    let name = input.descriptor.name
    func companion(_ suffix: String) throws(SwiftCompressError) -> TensorInput {
      guard let tensor = lookup(base + suffix) else {
        throw .invalidTensor(name: base + suffix, reason: "missing: \(name) cannot be dequantized without it")
      }
      return tensor
    }
    let scale = try companion("_scale")
    let scaleShape = scale.descriptor.shape
    guard scaleShape.count == 2, scaleShape[0] > 0, scaleShape[1] > 0 else {
      throw .invalidTensor(name: base + "_scale", reason: "shape \(scaleShape) is not a 2-D grid of scales")
    }
    var dense = [Float](repeating: 0, count: rows * columns)
    switch format.kind {
    case .packed(let bits):
      let scales = scale.floats()
      let round = DTypeRounding(scale.descriptor.dtype)
      let group = columns / scaleShape[1]
      var zeroPoints = [Float](repeating: 0, count: scales.count)
      if let zp = lookup(base + "_zero_point") {
        let codes = Self.unpack(zp.bytes, rows: zp.descriptor.shape[0], words: zp.descriptor.shape[1], bits: bits)
        // Packed along the output dimension: [words, groups] holds zero point (row, g) at
        // word row * bits / 32 of column g.
        let perWord = 32 / bits
        for row in 0..<rows {
          for g in 0..<scaleShape[1] {
            let code = codes[((row / perWord) * scaleShape[1] + g) * perWord + row % perWord]
            zeroPoints[row * scaleShape[1] + g] = Float(Int(code) - (1 << (bits - 1)))
          }
        }
      }
      let codes = Self.unpack(input.bytes, rows: rows, words: input.descriptor.shape[1], bits: bits)
      for row in 0..<rows {
        for column in 0..<columns {
          let index = row * scaleShape[1] + column / group
          let q = Float(Int(codes[row * columns + column]) - (1 << (bits - 1)))
          dense[row * columns + column] = round(round(q - zeroPoints[index]) * scales[index])
        }
      }
    case .sparseBitmask, .lowRank:
      break  // handled above
    case .float8:
      dense = try Self.dequantizeFloat8(input, scale: scale, block: format.block)
    case .mxfp4:
      let exponents = Array(scale.bytes)
      let groups = scaleShape[1]
      let group = columns / groups
      for row in 0..<rows {
        for column in 0..<columns {
          let byte = input.bytes[(row * columns + column) / 2]
          let code = column % 2 == 0 ? byte & 0xF : byte >> 4
          let e = Int(exponents[row * groups + column / group])
          dense[row * columns + column] =
            Float32Conversion.e2m1Table[Int(code)] * Float(sign: .plus, exponent: e - 127, significand: 1)
        }
      }
    case .nvfp4:
      // As the reference's NVFP4 decompressor: codes x (scale / g) in Float32, rounded
      // to BF16 (its working dtype), whatever dtype is written.
      let global = try companion("_global_scale").floats().first ?? 1
      let scales = scale.floats()
      let groups = scaleShape[1]
      let group = columns / groups
      let toBF16 = DTypeRounding(.bf16)
      for row in 0..<rows {
        for column in 0..<columns {
          let byte = input.bytes[(row * columns + column) / 2]
          let code = column % 2 == 0 ? byte & 0xF : byte >> 4
          let effective = scales[row * groups + column / group] / global
          dense[row * columns + column] = toBF16(Float32Conversion.e2m1Table[Int(code)] * effective)
        }
      }
    }
    return dense
  }

  /// Whether `name` is a weight (`.weight`, or a factor `.weight_a` / `.weight_b`)
  /// followed by `suffix`.
  static func isWeight(_ name: String, suffix: String) -> Bool {
    [".weight", ".weight_a", ".weight_b"].contains { name.hasSuffix($0 + suffix) }
  }

  /// An FP8 (E4M3) weight [rows, columns] times its scale, one per row (FP8_DYNAMIC) or
  /// per `block` (FP8_BLOCK's block_structure), in the scale's dtype as compressed-tensors'
  /// `_dequantize` computes it: r(r(q) x s).
  static func dequantizeFloat8(_ weight: TensorInput, scale: TensorInput, block: [Int]?) throws(SwiftCompressError)
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

  /// The `bits`-bit codes of `rows` rows of `words` little-endian int32 words each.
  static func unpack(_ bytes: UnsafeRawBufferPointer, rows: Int, words: Int, bits: Int) -> [UInt32] {
    let perWord = 32 / bits
    let mask: UInt32 = (1 << UInt32(bits)) - 1
    var codes = [UInt32](repeating: 0, count: rows * words * perWord)
    for w in 0..<(rows * words) {
      let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: w * 4, as: UInt32.self))
      for j in 0..<perWord { codes[w * perWord + j] = (word >> UInt32(bits * j)) & mask }
    }
    return codes
  }

  /// config.json without `quantization_config`, and `torch_dtype` set to the dense dtype,
  /// written as transformers writes it.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    guard let members = config.members, let format else { return nil }
    if let partial {
      // Some weights stay compressed: the records stay; factorize's lists only those left.
      guard let record = config[FactorizePass.configKey], let modules = record["modules"]?.members,
        let edited = config.setting(
          FactorizePass.configKey,
          to: record.setting("modules", to: .object(modules.filter { !partial.contains($0.key) })) ?? record)
      else { return JSONText.pretty(config) }
      return JSONText.pretty(edited)
    }
    // Every record of what was compressed goes: the weights are dense again.
    var edited = JSONValue.object(members.filter { !LoaderContract.recordKeys.contains($0.key) })
    if case .lowRank = format.kind {
      return JSONText.pretty(edited)
    }
    if case .sparseBitmask = format.kind, configuration.dtype == nil { return JSONText.pretty(edited) }
    if let name = CastPass.torchNames[format.target], config["torch_dtype"] != nil {
      edited = edited.setting("torch_dtype", to: .string(name)) ?? edited
    }
    return JSONText.pretty(edited)
  }
}
