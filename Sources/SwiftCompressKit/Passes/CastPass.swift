import CheckpointIO

/// Converts selected floating-point tensors to another float dtype (F32, F16, BF16
/// or F64) with round-to-nearest-even, and measures the error the rounding cost.
/// Input may be any float dtype this library reads, FP8 and FP4 included.
public struct CastPass: CompressionPass {
  public struct Configuration: Codable, Sendable, Equatable {
    /// The dtype to write.
    public var dtype: DType
    public init(dtype: DType) {
      self.dtype = dtype
    }
  }

  public static let identifier = "cast"
  public static let summary = "convert floating-point tensors to F32, F16, BF16 or F64"
  public let configuration: Configuration

  public init(configuration: Configuration) throws(SwiftCompressError) {
    guard Float32Conversion.encodableDTypes.contains(configuration.dtype) else {
      throw .invalidConfiguration(
        pass: Self.identifier,
        reason:
          "cannot write \(configuration.dtype.rawValue); choose one of \(Float32Conversion.encodableDTypes.map(\.rawValue).joined(separator: ", "))"
      )
    }
    self.configuration = configuration
  }

  public func plan(_ tensor: TensorDescriptor) -> TensorDecision {
    guard tensor.dtype.isFloatingPoint else {
      return .keep(reason: "\(tensor.dtype.rawValue) is not a floating-point dtype")
    }
    guard tensor.dtype != configuration.dtype else {
      return .keep(reason: "already \(configuration.dtype.rawValue)")
    }
    if tensor.dtype == .f64 {
      // F64 goes through Float32 first; say so rather than hide the double rounding.
      return .transform(
        outputs: [PlannedTensor(name: tensor.name, dtype: configuration.dtype, shape: tensor.shape)],
        note: "F64 is rounded to F32 first")
    }
    return .transform(
      outputs: [PlannedTensor(name: tensor.name, dtype: configuration.dtype, shape: tensor.shape)], note: nil)
  }

  /// When every floating-point tensor written is of the target dtype, `torch_dtype`
  /// (and `dtype`, its newer name, when present) says so, so that loaders using
  /// `torch_dtype="auto"` get the new dtype. A mixed checkpoint keeps its config.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    guard outputFloatDTypes == [configuration.dtype], let name = DTypeRounding.torchNames[configuration.dtype],
      config["torch_dtype"] != nil || config["dtype"] != nil
    else { return nil }
    var edited = config
    for key in ["torch_dtype", "dtype"] where config[key] != nil {
      edited = edited.setting(key, to: .string(name)) ?? edited
    }
    return edited == config ? nil : JSONText.pretty(edited)  // as transformers writes it
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) -> TransformResult {
    let target = configuration.dtype
    let count = input.elementCount
    let outputBytes = target.byteCount(elementCount: count) ?? 0
    var accumulator = ErrorAccumulator()
    var encoded = [UInt8](repeating: 0, count: outputBytes)
    var decoded = [Float](repeating: 0, count: min(chunkElementCount, count))
    encoded.withUnsafeMutableBytes { out in
      decoded.withUnsafeMutableBufferPointer { roundTrip in
        forEachChunk(of: input, count: count) { start, chunk in
          let width = target.bitsPerElement / 8
          let destination = UnsafeMutableRawBufferPointer(
            rebasing: out[(start * width)..<((start + chunk.count) * width)])
          Float32Conversion.encode(chunk, as: target, into: destination)
          let back = UnsafeMutableBufferPointer(rebasing: roundTrip[0..<chunk.count])
          Float32Conversion.convert(UnsafeRawBufferPointer(destination), dtype: target, count: chunk.count, into: back)
          accumulator.add(reference: chunk, reconstruction: UnsafeBufferPointer(back))
        }
      }
    }
    return TransformResult(outputs: [.owned(encoded)], reconstruction: .measured(accumulator))
  }
}
