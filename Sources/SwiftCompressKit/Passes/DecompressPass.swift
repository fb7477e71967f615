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

  public static let identifier = "decompress"
  public static let summary = "dequantize a compressed-tensors checkpoint back to dense weights"
  public let configuration: Configuration
  /// The checkpoint's layout, from `prepared(for:)`.
  var layout: StoredLayout?

  public init(configuration: Configuration = Configuration()) throws(SwiftCompressError) {
    if let dtype = configuration.dtype, !Float32Conversion.encodableDTypes.contains(dtype) {
      throw .invalidConfiguration(
        pass: Self.identifier, reason: "cannot write \(dtype.rawValue); choose F32, BF16, F16 or F64")
    }
    self.configuration = configuration
  }

  public var usesDefaultSelection: Bool { false }

  /// The output has no reference to be compared with (the original is not an input).
  public var measuresError: Bool { false }

  /// The dense weights written are the model's weights, not the codes and scales read.
  public var countsParametersOfOutputs: Bool { true }

  /// Reads the checkpoint's layout from its config.json, or for a checkpoint written
  /// without one, from the records its weights' __metadata__ carries.
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> DecompressPass {
    var pass = self
    pass.layout = try StoredLayout.read(checkpoint)
    for tensor in checkpoint.tensors {
      if case .primary = try pass.layout?.role(of: TensorDescriptor(tensor.info)) {
        pass.primaries.insert(tensor.name)
      }
    }
    return pass
  }

  /// Tensors that decompress into a dense weight, so that `planned(transforming:)` can
  /// tell whether `--include`/`--exclude` left some compressed.
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

  /// The dtype dense weights are written in: the configured one, else the one the layout
  /// keeps (sparse values, factors), else the model's `torch_dtype`, else F32.
  func outputDType(_ weight: DenseWeight, layout: StoredLayout) -> DType {
    configuration.dtype ?? weight.dtype ?? layout.modelDType ?? .f32
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    guard let layout else {
      throw .passBrokePlan(pass: Self.identifier, tensor: tensor.name, reason: "planned before prepared(for:)")
    }
    switch try layout.role(of: tensor) {
    case .primary(let weight):
      return .transform(
        outputs: [PlannedTensor(name: weight.name, dtype: outputDType(weight, layout: layout), shape: weight.shape)],
        note: weight.note)
    case .companion:
      return .transform(outputs: [], note: "folded into the dense weight")
    case .other:
      return .keep(reason: layout.record.untouched)
    }
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    guard let layout, let output = outputs.first,
      case .primary(var weight) = try layout.role(of: input.descriptor)
    else { return TransformResult(outputs: [], reconstruction: .notApplicable) }
    weight.shape = output.shape
    if output.dtype == input.descriptor.dtype, let bytes = try layout.exactBytes(input, as: weight) {
      return TransformResult(outputs: [.owned(bytes)], reconstruction: .notApplicable)
    }
    let dense = try layout.decode(input, as: weight)
    return TransformResult(
      outputs: [.owned(DenseCodec.encode(dense, as: output.dtype))], reconstruction: .notApplicable)
  }

  /// config.json without `quantization_config`, and `torch_dtype` set to the dense dtype,
  /// written as transformers writes it.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    guard let members = config.members, let layout else { return nil }
    if let partial {
      // Some weights stay compressed: the records stay; factorize's lists only those left.
      guard let record = config[LowRankRecord.configKey], let modules = record["modules"]?.members,
        let edited = config.setting(
          LowRankRecord.configKey,
          to: record.setting("modules", to: .object(modules.filter { !partial.contains($0.key) })) ?? record)
      else { return JSONText.pretty(config) }
      return JSONText.pretty(edited)
    }
    // Every record of what was compressed goes: the weights are dense again.
    var edited = JSONValue.object(members.filter { !LoaderContract.recordKeys.contains($0.key) })
    // A quantized layout is written in the model's dtype (or the one asked for); factors
    // and sparse values keep theirs unless a dtype is asked for.
    let target: DType? =
      switch layout.record {
      case .quantization: configuration.dtype ?? layout.modelDType ?? .f32
      case .sparsity: configuration.dtype
      case .factorization: nil
      }
    guard let target else { return JSONText.pretty(edited) }
    if let name = DTypeRounding.torchNames[target], config["torch_dtype"] != nil {
      edited = edited.setting("torch_dtype", to: .string(name)) ?? edited
    }
    return JSONText.pretty(edited)
  }
}
