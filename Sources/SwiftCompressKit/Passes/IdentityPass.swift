import CheckpointIO

/// Writes every selected tensor unchanged. It exercises the whole pipeline (plan,
/// stream, shard, report) at memory speed, and reshards a checkpoint.
public struct IdentityPass: CompressionPass {
  public struct Configuration: Codable, Sendable, Equatable {
    public init() {}
  }

  public static let identifier = "identity"
  public static let summary = "copy tensors unchanged (reshards, and measures the pipeline)"
  public let configuration: Configuration

  public init(configuration: Configuration = Configuration()) {
    self.configuration = configuration
  }

  public func plan(_ tensor: TensorDescriptor) -> TensorDecision {
    .transform(outputs: [PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)], note: nil)
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) -> TransformResult {
    TransformResult(outputs: [.input], reconstruction: .exact)
  }
}
