import CheckpointIO
import Foundation

/// The writer every streamer feeds: it takes the transformed tensors in plan order and
/// writes their outputs into the output shards, journals each shard as it is finished,
/// and keeps the record of every tensor (report entry and error sums) for the report.
///
/// With `--shard-index/--shard-count` it writes only this part's output shards; when it
/// resumes an interrupted run it writes none of the shards that run finished.
final class OutputWriter {
  let plan: CompressionPlan
  let checkpoint: Checkpoint
  private let folder: OutputFolder
  private let split: ShardSplit?
  private let adopted: Set<Int>
  private let journaled: [Int: TensorRecord]
  private var journal: Journal
  private var writers: [SafeTensorsWriter?]
  /// Every tensor's record, in the order they were done.
  private(set) var records: [TensorRecord] = []
  /// The records not yet in the journal: they join it with the next finished shard.
  private var pending: [TensorRecord] = []
  private var bytesDone = 0
  /// The input's tensor bytes, for the progress.
  private let byteCount: Int
  private let started: ContinuousClock.Instant
  private let progress: (@Sendable (ProgressUpdate) -> Void)?
  /// Outputs the pass made are written behind: queued here, they are written beside the
  /// next tensor's transform (by its parallel loop's first free worker, see `SideJobs`),
  /// so the core that would wait for the write works on. The run's last write waits for
  /// the report's renderings (`Compressor.run`). A job that completes a shard also
  /// finishes its file; the shard is journaled once the job is done.
  let writesBehind = SideJobs()
  /// The shards a job behind completes, journaled when it is done (`journalFinished`).
  private var finishedBehind: [(shard: Int, target: SafeTensorsWriter)] = []
  /// The shards with data this run writes and has not finished.
  private var shardsLeft: Set<Int> = []

  init(
    plan: CompressionPlan, checkpoint: Checkpoint, staging: Staging, split: ShardSplit?,
    started: ContinuousClock.Instant, progress: (@Sendable (ProgressUpdate) -> Void)?
  ) {
    self.plan = plan
    self.checkpoint = checkpoint
    folder = staging.folder
    adopted = staging.adopted
    journaled = staging.journaled
    journal = staging.journal
    self.split = split
    writers = Array(repeating: nil, count: plan.layout.shards.count)
    self.started = started
    self.progress = progress
    byteCount = checkpoint.tensorByteCount
    shardsLeft = Set(
      plan.layout.shards.indices.filter { shard in
        isAssigned(shard) && !adopted.contains(shard)
          && plan.layout.shards[shard].tensors.contains { ($0.byteCount ?? 0) > 0 }
      })
  }

  /// The output shards finished so far (by this run or the one it resumed), checksummed.
  var finishedShards: [Manifest.Entry] { journal.shards.map(\.file) }

  /// Whether this run writes output shard `shard`: with a split, the shards s with
  /// s % count == index.
  func isAssigned(_ shard: Int) -> Bool {
    guard let split else { return true }
    return shard % split.count == split.index
  }

  /// Whether the tensor at `index` of the plan must be transformed: not when none of
  /// its outputs is in this part's shards (a tensor with no outputs, folded into
  /// another, belongs to part 0), nor when the interrupted run this one resumes wrote all
  /// of them and journaled its record, which is then taken as this run's.
  func claim(_ index: Int) -> Bool {
    let shards = plan.entries[index].outputs.map { plan.shardOfOutput[$0.name] ?? 0 }
    guard shards.isEmpty ? isAssigned(0) : shards.contains(where: isAssigned) else { return false }
    if !shards.isEmpty, shards.allSatisfy(adopted.contains), let record = journaled[index] {
      records.append(record)  // written by the interrupted run
      return false
    }
    return true
  }

  /// Takes what the pass made of the tensor at `index` (claimed, and handed over in plan
  /// order): checks it against the plan, writes the outputs this run writes, journals the
  /// shards it finishes, measures the error and records the tensor.
  func accept(_ index: Int, input: TensorInput, result: TransformResult) throws {
    let entry = plan.entries[index]
    let tensor = entry.tensor
    let identifier = type(of: plan.pass).identifier
    guard result.outputs.count == entry.outputs.count else {
      throw SwiftCompressError.passBrokePlan(
        pass: identifier, tensor: tensor.name,
        reason: "returned \(result.outputs.count) outputs for \(entry.outputs.count) planned")
    }
    var outputEntries: [Report.OutputTensor] = []
    var writes: [(name: String, data: OutputData, shard: Int)] = []
    for (planned, data) in zip(entry.outputs, result.outputs) {
      let size = data.count(inputByteCount: tensor.info.byteCount)
      guard size == planned.byteCount else {
        throw SwiftCompressError.passBrokePlan(
          pass: identifier, tensor: tensor.name,
          reason: "output '\(planned.name)' has \(size) bytes, planned \(planned.byteCount ?? -1)")
      }
      let shard = plan.shardOfOutput[planned.name] ?? 0
      outputEntries.append(
        Report.OutputTensor(
          name: planned.name, dtype: planned.dtype.rawValue, shape: planned.shape, bytes: size,
          file: plan.layout.shards[shard].fileName))
      guard isAssigned(shard), !adopted.contains(shard) else { continue }
      writes.append((planned.name, data, shard))
    }
    try write(writes, of: tensor)
    let record = self.record(index, input: input, result: result, outputs: outputEntries)
    records.append(record)
    pending.append(record)
    bytesDone += tensor.info.byteCount
    if let progress, let done = record.entry {
      progress(
        ProgressUpdate(
          tensorsDone: index + 1, tensorCount: plan.entries.count, bytesDone: bytesDone,
          byteCount: byteCount, elapsed: Compressor.seconds(ContinuousClock.now - started),
          currentTensor: tensor.name, entry: done))
    }
  }

  /// Finishes the shards no tensor was written into (an empty model still gets a valid
  /// file), removes the journal (the run is complete) and writes the index.
  func finish() throws {
    try writesBehind.finish()
    try journalFinished()
    for shard in plan.layout.shards.indices where writers[shard] == nil && isAssigned(shard) && !adopted.contains(shard)
    {
      try writer(for: shard).finish()
    }
    try? FileManager.default.removeItem(atPath: try folder.path(for: Journal.fileName))
    if let indexName = plan.layout.indexFileName {
      try folder.write(plan.layout.indexJSON(), to: indexName)
    }
  }

  /// Writes a tensor's outputs, after the write behind before them. They are written
  /// behind (a job of `writesBehind`) when the pass made them all, else at once, one by
  /// one.
  private func write(_ outputs: [(name: String, data: OutputData, shard: Int)], of tensor: CheckpointTensor) throws {
    try writesBehind.finish()
    try journalFinished()
    if Parallel.jobs > 1, let job = try writeBehind(outputs) {
      try writesBehind.submit(job)
      return
    }
    for output in outputs { try write(output.name, output.data, of: tensor, into: output.shard) }
  }

  /// The job writing `outputs` (and finishing the files they complete, which are then
  /// in `finishedBehind`), or nil when one of them is not an array the pass made, goes
  /// into a shard with no bytes left to write (a tensor of size zero: the writer takes
  /// it at once) or overruns its shard (the writer refuses it at once).
  private func writeBehind(_ outputs: [(name: String, data: OutputData, shard: Int)]) throws
    -> (@Sendable () throws -> Void)?
  {
    guard !outputs.isEmpty else { return nil }
    var writes: [(target: SafeTensorsWriter, name: String, bytes: [UInt8])] = []
    var counts: [Int: Int] = [:]
    for output in outputs {
      guard case .owned(let bytes) = output.data else { return nil }
      writes.append((try writer(for: output.shard), output.name, bytes))
      counts[output.shard, default: 0] += bytes.count
    }
    var completed: [(shard: Int, target: SafeTensorsWriter)] = []
    for (shard, count) in counts.sorted(by: { $0.key < $1.key }) {
      guard let target = writers[shard], target.remainingBytes > 0, count <= target.remainingBytes else { return nil }
      if count == target.remainingBytes { completed.append((shard, target)) }
    }
    finishedBehind += completed
    nonisolated(unsafe) let (queued, closing) = (writes, completed.map(\.target))
    return {
      for write in queued { try write.bytes.withUnsafeBytes { try write.target.write(write.name, $0) } }
      for target in closing { try target.finish() }
    }
  }

  /// Journals the shards the jobs behind finished (all done by now).
  private func journalFinished() throws {
    for (shard, target) in finishedBehind { try journalFinished(shard, target) }
    finishedBehind = []
  }

  /// Journals `shard`, finished by `target`, with the records not yet journaled.
  private func journalFinished(_ shard: Int, _ target: SafeTensorsWriter) throws {
    shardsLeft.remove(shard)
    // The run's last shard is journaled in memory only: the file would be removed
    // a moment later, when the run completes.
    try journal.append(
      Manifest.Entry(path: plan.layout.shards[shard].fileName, bytes: target.fileSize, crc32: target.crc32),
      records: pending, in: folder, store: !shardsLeft.isEmpty)
    pending = []
  }

  /// Writes one output into `shard`; a shard complete with it is finished and journaled.
  private func write(_ name: String, _ data: OutputData, of tensor: CheckpointTensor, into shard: Int) throws {
    let target = try writer(for: shard)
    switch data {
    case .input:
      let file = checkpoint.files[tensor.file]
      try target.copy(name, from: file.mapping, range: file.fileRange(of: tensor.info))
    case .borrowed(let view): try target.write(name, view)
    case .owned(let array): try array.withUnsafeBytes { try target.write(name, $0) }
    }
    if target.isComplete {
      try target.finish()
      try journalFinished(shard, target)
    }
  }

  private func writer(for shard: Int) throws -> SafeTensorsWriter {
    if let existing = writers[shard] { return existing }
    let info = plan.layout.shards[shard]
    let created = try SafeTensorsWriter(
      destination: try folder.path(for: info.fileName), tensors: info.tensors, metadata: plan.metadata)
    writers[shard] = created
    return created
  }

  /// The tensor's report entry and error sums.
  private func record(_ index: Int, input: TensorInput, result: TransformResult, outputs: [Report.OutputTensor])
    -> TensorRecord
  {
    let entry = plan.entries[index]
    let tensor = entry.tensor
    var record = TensorRecord(index: index, entry: nil, error: nil, baseline: result.baseline, measurement: .kept)
    var reason: String?
    switch entry.action {
    case .keep(let why):
      reason = why
    case .transform(let note):
      reason = note
      switch result.reconstruction {
      case .exact: record.measurement = .exact
      case .dense(let values):
        record.error = measure(input, against: values)
        record.measurement = .measured
      case .measured(let accumulator):
        record.error = accumulator
        record.measurement = .measured
      case .notApplicable:
        record.measurement = .unmeasured
      }
    }
    let parameters = plan.pass.parameters(of: entry)
    let after = outputs.reduce(0) { $0 + $1.bytes }
    record.entry = Report.TensorEntry(
      name: tensor.name, dtype: tensor.info.dtype.rawValue, shape: tensor.info.shape, parameters: parameters,
      action: entry.action.isKeep ? "kept" : "transformed",
      reason: reason, outputs: outputs, bytesBefore: tensor.info.byteCount, bytesAfter: after,
      bitsPerWeightBefore: Compressor.bitsPerWeight(tensor.info.byteCount, parameters),
      bitsPerWeightAfter: Compressor.bitsPerWeight(after, parameters), metrics: record.metrics,
      roundToNearestMetrics: result.baseline?.metrics, sparsity: result.sparsity,
      svdOptimumError: result.optimalError)
    return record
  }
}
