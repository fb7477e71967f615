import CheckpointIO
import Foundation

/// How a checkpoint's weights are stored, read from the records of its config.json (or,
/// without one, its weights' `__metadata__`): the codecs to try on each tensor, in order.
/// `decompress` and `diff` read checkpoints through it.
public struct StoredLayout: Sendable {
  /// The codecs, tried in order: the first that claims a tensor decodes it.
  public let codecs: [any WeightCodec]
  /// The dtype config.json's `torch_dtype` names, nil when absent or not a float dtype.
  public let modelDType: DType?
  /// Which record of config.json describes the layout.
  public let record: Record

  /// The record of config.json a layout is read from.
  public enum Record: Sendable, Equatable {
    /// `quantization_config` with a quantization format (its factors or a low-rank
    /// residual may come with it).
    case quantization
    /// `quantization_config.sparsity_config` with a bitmask format.
    case sparsity
    /// factorize's record alone: dense factors.
    case factorization

    /// What a tensor outside the layout is, for the plan.
    var untouched: String {
      switch self {
      case .quantization: "not quantized"
      case .sparsity: "not sparse"
      case .factorization: "not factorized"
      }
    }
  }

  /// What the layout is called in `diff`: its quantized layout's name, or its only one's.
  public var name: String { codecs.last?.layoutName ?? "dense" }

  /// What one stored tensor is in the layout.
  public enum Role: Sendable {
    /// It stands for this dense weight (its companions are read with it).
    case primary(DenseWeight)
    /// It is read with a primary tensor.
    case companion
    /// It is not part of a compressed weight.
    case other
  }

  /// The layout of `checkpoint`. Throws when it records no compressed layout, or one no
  /// codec reads.
  public static func read(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> StoredLayout {
    let config = LoaderContract.config(of: checkpoint)
    let path = LoaderContract.configPath(of: checkpoint)
    let factorized = config?[LowRankRecord.configKey] != nil
    guard let config, let quantization = config["quantization_config"] else {
      if factorized {
        return StoredLayout(
          codecs: [try LowRankCodec(factors: nil).reading(checkpoint)], modelDType: nil, record: .factorization)
      }
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "has no quantization_config (in config.json, or without one in its weights' __metadata__): it is not a compressed-tensors checkpoint"
      )
    }
    let formatName = quantization["format"]?.stringValue ?? ""
    let sparseFormat = quantization["sparsity_config"]?["format"]?.stringValue ?? ""
    if SparseBitmask.formats.contains(sparseFormat) {
      guard formatName.isEmpty || formatName == "dense" else {
        throw .invalidFile(
          path: path, reason: "sparse weights that are also quantized ('\(formatName)') are not supported by decompress"
        )
      }
      return StoredLayout(
        codecs: [try SparseBitmaskCodec.reading(checkpoint)], modelDType: nil, record: .sparsity)
    }
    if (quantization["config_groups"]?.members?.count ?? 0) > 1 {
      // Mixed precision: each module decodes with its config group's codec (factors of
      // factorize too, multiplied out).
      if quantization["transform_config"]?.members?.isEmpty == false || config[LowRankRecord.residualConfigKey] != nil {
        throw .invalidFile(
          path: path,
          reason:
            "several config groups together with a low-rank residual or transform_config are not supported by decompress"
        )
      }
      let groups = try ConfigGroupsCodec(quantization, path: path)
      return StoredLayout(
        codecs: (factorized ? [try LowRankCodec(factors: groups).reading(checkpoint)] : []) + [groups],
        modelDType: Self.modelDType(config), record: .quantization)
    }
    guard let codec = QuantizationConfig.codec(of: quantization) else {
      let bits = quantization["config_groups"]?.members?.first?.value["weights"]?["num_bits"]?.uint64Value ?? 0
      throw .invalidFile(
        path: path,
        reason:
          "quantization format '\(formatName)' with \(bits)-bit weights is not supported; supported: \(QuantizationConfig.readableFormats)"
      )
    }
    let torchDType = modelDType(config)
    var codecs: [any WeightCodec] = []
    if factorized {
      // factorize then quantize: the quantized factors are multiplied out too.
      codecs.append(try LowRankCodec(factors: codec).reading(checkpoint))
    }
    if let (rotation, ignore) = try OnlineRotation.recorded(in: quantization, path: path) {
      // transform_config's online rotation: decoded weights are multiplied back by R.
      codecs.append(OnlineRotationCodec(base: LowRankResidualCodec(base: codec), rotation: rotation, ignore: ignore))
    } else {
      codecs.append(LowRankResidualCodec(base: codec))
    }
    return StoredLayout(codecs: codecs, modelDType: torchDType, record: .quantization)
  }

  /// The dtype config.json's `torch_dtype` (or `dtype`) names, nil when absent or not a float dtype.
  static func modelDType(_ config: JSONValue) -> DType? {
    switch config["torch_dtype"]?.stringValue ?? config["dtype"]?.stringValue {
    case "bfloat16": .bf16
    case "float16": .f16
    case "float32": .f32
    default: nil
    }
  }

  /// Refuses a checkpoint whose config.json records a quantization: pruning or factorizing
  /// compressed weights would change their codes.
  public static func refuseCompressed(_ checkpoint: Checkpoint) throws(SwiftCompressError) {
    let configPath = checkpoint.folder + "/config.json"
    if checkpoint.layout != .file, let data = FileManager.default.contents(atPath: configPath),
      let config = try? JSONParser.parse(Array(data)), config["quantization_config"] != nil
    {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "is already compressed (its config.json has a quantization_config); run 'swiftcompress decompress' first")
    }
  }

  /// What `stored` is in this layout.
  public func role(of stored: TensorDescriptor) throws(SwiftCompressError) -> Role {
    for codec in codecs {
      if let weight = try codec.densePrimary(stored) { return .primary(weight) }
      if codec.isCompanion(stored) { return .companion }
    }
    return .other
  }

  /// The dense weight's bytes in the stored values' dtype when its layout holds them
  /// exactly (`WeightCodec.exactBytes`), else nil.
  public func exactBytes(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [UInt8]? {
    for codec in codecs where try codec.densePrimary(primary.descriptor) != nil {
      return try codec.exactBytes(primary, as: weight)
    }
    return nil
  }

  /// The dense values of the weight whose primary tensor is `primary`.
  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    for codec in codecs where try codec.densePrimary(primary.descriptor) != nil {
      return try codec.decode(primary, as: weight)
    }
    throw .invalidTensor(name: primary.descriptor.name, reason: "is not a compressed weight of this checkpoint")
  }
}

/// factorize's record in config.json: which modules are stored as factors, at what rank.
public enum LowRankRecord {
  /// The config.json key of the record.
  public static let configKey = "swiftcompress_factorization"
  /// The config.json key of the low-rank residual's record (`LowRankResidualCodec`).
  public static let residualConfigKey = "swiftcompress_lowrank_residual"
}
