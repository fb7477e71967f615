import CheckpointIO
import Foundation

/// The stream step: reads the tensors of a plan, has the pass transform them and hands
/// every result to the run's `OutputWriter`, which writes, journals and records them.
///
/// `TensorByTensorStreamer` is today's: one tensor at a time, each independent of the
/// others. A streamer that goes layer by layer (running the model forward between
/// layers, to give a pass calibration statistics) conforms the same way and feeds the
/// same writer; whatever order it computes in, it hands results over in plan order.
protocol TensorStreamer {
  /// Transforms every tensor of `plan` that `writer` claims, read from `checkpoint`,
  /// and hands each to `writer.accept` in plan order.
  func stream(_ plan: CompressionPlan, from checkpoint: Checkpoint, into writer: OutputWriter) throws
}

/// Reads, transforms, writes and releases one tensor after another, so peak memory
/// stays near the largest tensor rather than the model size.
struct TensorByTensorStreamer: TensorStreamer {
  func stream(_ plan: CompressionPlan, from checkpoint: Checkpoint, into writer: OutputWriter) throws {
    for (index, entry) in plan.entries.enumerated() where writer.claim(index) {
      let input = checkpoint.input(of: entry.tensor)
      try writer.accept(index, input: input, result: try plan.result(of: entry, input: input))
      checkpoint.release(entry.tensor)
    }
  }
}

extension CompressionPlan {
  /// What `entry` becomes: its stored bytes when kept, else the pass's transform.
  func result(of entry: PlanEntry, input: TensorInput) throws -> TransformResult {
    switch entry.action {
    case .keep: TransformResult(outputs: [.input], reconstruction: .exact)
    case .transform: try pass.transform(input, outputs: entry.outputs)
    }
  }
}

extension Checkpoint {
  /// The tensor's descriptor and stored bytes (a view of the mapping, valid until it is
  /// released), with the checkpoint's other tensors as its companions.
  func input(of tensor: CheckpointTensor) -> TensorInput {
    TensorInput(descriptor: TensorDescriptor(tensor.info), bytes: bytes(of: tensor), fileMapped: true) { name in
      self.tensor(named: name).map {
        TensorInput(descriptor: TensorDescriptor($0.info), bytes: self.bytes(of: $0), fileMapped: true)
      }
    }
  }
}
