import CheckpointIO
import Foundation

/// Options of one compression run, shared by every subcommand.
public struct CompressionOptions: Sendable {
  public var input: String
  public var output: String
  public var selection: TensorSelection
  /// Largest data size of one output shard, in bytes.
  public var maxShardSize: Int
  /// Replace an existing output folder.
  public var force: Bool
  /// The subcommand, recorded in the report.
  public var command: String
  /// Limits checked against the totals; the report records the outcome.
  public var gates: QualityGates
  /// The effective recipe, written into the output folder as `swiftcompress-recipe.yaml`.
  public var recipe: Recipe?
  /// `--shard-index` / `--shard-count`: write only this part of the output (see `Merger`).
  public var split: ShardSplit?
  /// `--strict`: any warning of the plan stops the run before anything is written (exit 65).
  public var strict = false

  public static let defaultMaxShardSize = 5_000_000_000

  public init(
    input: String, output: String, selection: TensorSelection, maxShardSize: Int = defaultMaxShardSize,
    force: Bool = false, command: String, gates: QualityGates = QualityGates(), recipe: Recipe? = nil
  ) {
    self.input = input
    self.output = output
    self.selection = selection
    self.maxShardSize = maxShardSize
    self.force = force
    self.command = command
    self.gates = gates
    self.recipe = recipe
  }
}

/// What the driver will do with one input tensor.
public struct PlanEntry: Sendable, Equatable {
  public enum Action: Sendable, Equatable {
    case keep(reason: String)
    case transform(note: String?)

    public var isKeep: Bool {
      if case .keep = self { return true }
      return false
    }
  }

  public var tensor: CheckpointTensor
  public var action: Action
  /// The tensors written in its place (itself when kept).
  public var outputs: [PlannedTensor]
}

/// Every decision of a run, made before any tensor data is read or written.
public struct CompressionPlan: Sendable {
  public var entries: [PlanEntry]
  public var layout: ShardLayout
  /// Output shard of every output tensor name.
  public var shardOfOutput: [String: Int]
  public var metadata: [String: String]?
  /// The pass as planned (`CompressionPass.planned(transforming:)`), which the run uses.
  public var pass: any CompressionPass
  /// config.json as the run writes it, derived from the tensors written
  /// (`LoaderContract`); nil when it is copied unchanged or there is none.
  public var configText: String?
  /// Files written beside the weights besides config.json (the loader guard's modeling
  /// file), by name.
  public var extraFiles: [String: String] = [:]
  /// Auxiliary files of the input that are not carried over (a modeling file whose
  /// guard the run removed).
  public var droppedFiles: [String] = []
  /// What the user should know before anything is written: the pass's warnings,
  /// selections that match nothing, outputs no loader can read as they are.
  /// `--strict` makes them errors.
  public var warnings: [String] = []
  /// Facts about the output that are not problems (how a guarded layout loads).
  public var notes: [String] = []
}

/// Progress of a run, reported after each tensor.
public struct ProgressUpdate: Sendable {
  public var tensorsDone: Int
  public var tensorCount: Int
  public var bytesDone: Int
  public var byteCount: Int
  public var elapsed: Double
  public var currentTensor: String
  /// The report entry of the tensor just finished.
  public var entry: Report.TensorEntry
}

/// The pipeline driver: plans every tensor, then streams them one at a time (read,
/// transform, write, release), so peak memory stays near the largest tensor rather
/// than the model size.
public enum Compressor {
  /// Plans `pass` over `checkpoint`: selection, the pass's decision, output names,
  /// dtypes, shapes and sizes, and the shard layout. Throws before anything is
  /// written when a decision is invalid.
  public static func plan(
    _ checkpoint: Checkpoint, pass: any CompressionPass, options: CompressionOptions
  ) throws(SwiftCompressError) -> CompressionPlan {
    var entries: [PlanEntry] = []
    var producer: [String: String] = [:]
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      let unchanged = [PlannedTensor(name: tensor.name, dtype: tensor.info.dtype, shape: tensor.info.shape)]
      var entry: PlanEntry
      switch options.selection.decide(descriptor, defaults: pass.usesDefaultSelection) {
      case .skipped(let reason):
        entry = PlanEntry(tensor: tensor, action: .keep(reason: reason), outputs: unchanged)
      case .selected:
        switch try pass.plan(descriptor) {
        case .keep(let reason):
          entry = PlanEntry(tensor: tensor, action: .keep(reason: reason), outputs: unchanged)
        case .transform(let outputs, let note):
          for output in outputs where output.byteCount == nil {
            throw .passBrokePlan(
              pass: type(of: pass).identifier, tensor: tensor.name, reason: "output '\(output.name)' has no valid size")
          }
          entry = PlanEntry(tensor: tensor, action: .transform(note: note), outputs: outputs)
        }
      }
      for output in entry.outputs {
        if let first = producer[output.name] {
          throw .outputNameClash(name: output.name, first: first, second: tensor.name)
        }
        producer[output.name] = tensor.name
      }
      entries.append(entry)
    }
    let layout = ShardLayout(
      tensors: entries.flatMap(\.outputs), maxShardSize: options.maxShardSize, stem: checkpoint.weightStem)
    var shardOfOutput: [String: Int] = [:]
    for (i, shard) in layout.shards.enumerated() {
      for tensor in shard.tensors { shardOfOutput[tensor.name] = i }
    }
    let pass = pass.planned(transforming: entries.filter { !$0.action.isKeep }.map { TensorDescriptor($0.tensor.info) })
    var metadata = checkpoint.metadata
    let extra = pass.outputMetadata
    if !extra.isEmpty {
      metadata = (metadata ?? [:]).merging(extra) { _, new in new }
    }
    var plan = CompressionPlan(
      entries: entries, layout: layout, shardOfOutput: shardOfOutput, metadata: metadata, pass: pass)
    plan.warnings = pass.warnings + options.selection.unmatchedPatterns(in: checkpoint.tensors.map(\.name))
    for warning in pass.selectionWarnings(for: checkpoint) where !plan.warnings.contains(warning) {
      plan.warnings.append(warning)
    }
    if !checkpoint.tensors.isEmpty, entries.allSatisfy(\.action.isKeep) {
      plan.warnings.append(
        "\(type(of: pass).identifier) changed no tensor: the output holds the input's tensors unchanged")
    }
    planConfig(&plan, checkpoint: checkpoint)
    return plan
  }

  /// config.json (or, without one, the weights' `__metadata__` records) as the pass edits
  /// it, made to match the tensors written (`LoaderContract`), and the loader guard's file.
  static func planConfig(_ plan: inout CompressionPlan, checkpoint: Checkpoint) {
    let outputs = plan.entries.flatMap(\.outputs)
    let floatDTypes = Set(outputs.map(\.dtype).filter(\.isFloatingPoint))
    let pass = plan.pass
    var metadata = plan.metadata ?? [:]
    if LoaderContract.hasConfigFile(checkpoint) {
      guard let data = FileManager.default.contents(atPath: checkpoint.folder + "/config.json"),
        let config = try? JSONParser.parse(Array(data)),  // not valid JSON: copied unchanged, not ours to judge
        let text = pass.editedConfig(config, outputFloatDTypes: floatDTypes)
      else { return }
      let (final, parsed) = LoaderContract.finished(text, tensors: outputs)
      plan.configText = final
      if let parsed, !LoaderGuard.layouts(of: parsed).isEmpty {
        plan.extraFiles[LoaderGuard.modelingFileName] = LoaderGuard.modelingSource(
          originalModelType: LoaderGuard.originalModelType(parsed))
        plan.notes.append("the output " + LoaderGuard.summary(of: parsed))
      } else if checkpoint.auxiliaryFiles.contains(LoaderGuard.modelingFileName) {
        plan.droppedFiles.append(LoaderGuard.modelingFileName)
      }
      // Records the config no longer holds do not stay in the weights' headers.
      for key in LoaderContract.recordKeys where parsed?[key] == nil { metadata[key] = nil }
    } else {
      // No config.json: what the pass records travels in every weight file's __metadata__.
      let records = JSONValue.object(LoaderContract.recordsFromMetadata(plan.metadata))
      guard let text = pass.editedConfig(records, outputFloatDTypes: floatDTypes),
        let edited = try? JSONParser.parse(Array(text.utf8))
      else { return }
      let final = LoaderContract.reconciled(edited, tensors: outputs)
      for key in LoaderContract.recordKeys { metadata[key] = final[key].map(JSONText.compact) }
      let kept = LoaderContract.recordKeys.filter { final[$0] != nil }
      if !kept.isEmpty {
        plan.warnings.append(
          "the input has no config.json, so the output has none and transformers cannot load it; its \(kept.joined(separator: ", ")) record\(kept.count == 1 ? " is" : "s are") in the weights' __metadata__, which swiftcompress decompress, diff and verify read"
        )
      }
    }
    plan.metadata = metadata.isEmpty && plan.metadata == nil ? nil : metadata
  }

  /// Runs `pass` from `options.input` to `options.output` and returns the report,
  /// which is also written into the output folder.
  public static func run(
    pass: any CompressionPass, options: CompressionOptions,
    progress: (@Sendable (ProgressUpdate) -> Void)? = nil
  ) throws -> Report {
    let clock = ContinuousClock()
    let start = clock.now
    guard options.maxShardSize > 0 else {
      throw SwiftCompressError.invalidOption(option: "--max-shard-size", reason: "must be positive")
    }
    let checkpoint = try Checkpoint.open(options.input)
    let plan = try plan(checkpoint, pass: try pass.prepared(for: checkpoint), options: options)
    if options.strict, !plan.warnings.isEmpty { throw SwiftCompressError.strictWarnings(plan.warnings) }
    let pass = plan.pass
    var manifestOptions = manifestOptions(checkpoint: checkpoint, pass: pass, options: options)
    if let split = options.split { manifestOptions["shard"] = "\(split.index)/\(split.count)" }
    // Resume: an interrupted run with the same options left finished shards behind.
    let resumed = Journal.resumable(destination: options.output, options: manifestOptions)
    var journal = resumed?.journal ?? Journal(options: manifestOptions)
    let folder = try OutputFolder(
      destination: options.output, inputs: checkpoint.inputPaths, replace: options.force, adopting: resumed?.staging,
      keep: Set(journal.shards.map(\.file.path)))
    let adopted = Set(
      plan.layout.shards.indices.filter { i in
        journal.shards.contains { $0.file.path == plan.layout.shards[i].fileName }
      })
    var journaled: [Int: TensorRecord] = [:]
    for shard in journal.shards { for record in shard.records { journaled[record.index] = record } }
    var pending: [TensorRecord] = []

    var editedFiles: [String] = []
    for relative in checkpoint.auxiliaryFiles where !plan.droppedFiles.contains(relative) {
      if relative == "config.json", let edited = plan.configText {
        try folder.write(edited, to: relative)
        editedFiles.append(relative)
      } else if plan.extraFiles[relative] == nil {
        try folder.copy(from: checkpoint.folder + "/" + relative, to: relative)
      }
    }
    for (name, text) in plan.extraFiles.sorted(by: { $0.key < $1.key }) {
      try folder.write(text, to: name)
      editedFiles.append(name)
    }

    let byteCount = checkpoint.tensorByteCount
    var records: [TensorRecord] = []
    let identifier = type(of: pass).identifier
    var writers: [SafeTensorsWriter?] = Array(repeating: nil, count: plan.layout.shards.count)
    var bytesDone = 0
    // With --shard-index/--shard-count, this run writes only the output shards s with
    // s % count == index, and transforms only the tensors with an output in them.
    func assigned(_ shard: Int) -> Bool {
      guard let split = options.split else { return true }
      return shard % split.count == split.index
    }

    /// A finished shard joins the journal, with the records of the tensors done so far.
    func journalFinished(_ shard: Int) throws {
      let name = plan.layout.shards[shard].fileName
      let (bytes, crc) = try Manifest.checksum(path: try folder.path(for: name))
      journal.shards.append(Journal.Shard(file: Manifest.Entry(path: name, bytes: bytes, crc32: crc), records: pending))
      pending = []
      // Written aside and renamed, so an interruption never leaves half a journal.
      try folder.write(Format.json(journal), to: Journal.fileName + ".tmp")
      guard rename(try folder.path(for: Journal.fileName + ".tmp"), try folder.path(for: Journal.fileName)) == 0 else {
        throw CheckpointError.cannotCreateOutput(path: options.output, reason: "cannot write the resume journal")
      }
      // Test hook: the resume tests kill the run here, after this many shards.
      if let limit = killAfterShards, journal.shards.count >= limit {
        kill(
          getpid(), ProcessInfo.processInfo.environment["SWIFTCOMPRESS_TEST_KILL_SIGNAL"] == "INT" ? SIGINT : SIGKILL)
        sleep(10)  // the signal thread exits the process
      }
    }

    func writer(for shard: Int) throws -> SafeTensorsWriter {
      if let existing = writers[shard] { return existing }
      let info = plan.layout.shards[shard]
      let created = try SafeTensorsWriter(
        destination: try folder.path(for: info.fileName), tensors: info.tensors, metadata: plan.metadata)
      writers[shard] = created
      return created
    }

    for (index, entry) in plan.entries.enumerated() {
      let tensor = entry.tensor
      let shards = entry.outputs.map { plan.shardOfOutput[$0.name] ?? 0 }
      // A tensor with no outputs (folded into another) is recorded by part 0.
      guard shards.isEmpty ? assigned(0) : shards.contains(where: assigned) else { continue }
      if !shards.isEmpty, shards.allSatisfy(adopted.contains), let record = journaled[index] {
        records.append(record)  // written by the interrupted run
        continue
      }
      let bytes = checkpoint.bytes(of: tensor)
      let input = TensorInput(descriptor: TensorDescriptor(tensor.info), bytes: bytes) { name in
        checkpoint.tensor(named: name).map {
          TensorInput(descriptor: TensorDescriptor($0.info), bytes: checkpoint.bytes(of: $0))
        }
      }
      let result: TransformResult
      switch entry.action {
      case .keep:
        result = TransformResult(outputs: [.input], reconstruction: .exact)
      case .transform:
        result = try pass.transform(input, outputs: entry.outputs)
      }
      guard result.outputs.count == entry.outputs.count else {
        throw SwiftCompressError.passBrokePlan(
          pass: identifier, tensor: tensor.name,
          reason: "returned \(result.outputs.count) outputs for \(entry.outputs.count) planned")
      }
      var outputEntries: [Report.OutputTensor] = []
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
        guard assigned(shard), !adopted.contains(shard) else { continue }
        let target = try writer(for: shard)
        switch data {
        case .input:
          let file = checkpoint.files[tensor.file]
          try target.copy(planned.name, from: file.mapping, range: file.fileRange(of: tensor.info))
        case .borrowed(let view): try target.write(planned.name, view)
        case .owned(let array): try array.withUnsafeBytes { try target.write(planned.name, $0) }
        }
        if target.isComplete {
          try target.finish()
          try journalFinished(shard)
        }
      }

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
      checkpoint.release(tensor)

      let parameters = pass.parameters(of: entry)
      let after = outputEntries.reduce(0) { $0 + $1.bytes }
      record.entry = Report.TensorEntry(
        name: tensor.name, dtype: tensor.info.dtype.rawValue, shape: tensor.info.shape, parameters: parameters,
        action: entry.action.isKeep ? "kept" : "transformed",
        reason: reason, outputs: outputEntries, bytesBefore: tensor.info.byteCount, bytesAfter: after,
        bitsPerWeightBefore: bitsPerWeight(tensor.info.byteCount, parameters),
        bitsPerWeightAfter: bitsPerWeight(after, parameters), metrics: record.metrics,
        roundToNearestMetrics: result.baseline?.metrics, sparsity: result.sparsity,
        svdOptimumError: result.optimalError)
      records.append(record)
      pending.append(record)
      bytesDone += tensor.info.byteCount
      if let progress, let done = record.entry {
        let elapsed = clock.now - start
        progress(
          ProgressUpdate(
            tensorsDone: index + 1, tensorCount: plan.entries.count, bytesDone: bytesDone, byteCount: byteCount,
            elapsed: seconds(elapsed), currentTensor: tensor.name, entry: done))
      }
    }
    // Shards with no tensors (an empty model) still get a valid file.
    for shard in plan.layout.shards.indices where writers[shard] == nil && assigned(shard) && !adopted.contains(shard) {
      try writer(for: shard).finish()
    }
    try? FileManager.default.removeItem(atPath: try folder.path(for: Journal.fileName))
    if let indexName = plan.layout.indexFileName {
      try folder.write(plan.layout.indexJSON(), to: indexName)
    }

    let elapsed = seconds(clock.now - start)
    var report = Report(
      command: options.command, checkpoint: checkpoint, plan: plan, options: options, pass: pass,
      tensors: [], editedFiles: editedFiles, totalMetrics: nil,
      timing: Report.Timing(
        seconds: elapsed, bytesPerSecond: elapsed > 0 ? Double(byteCount) / elapsed : 0,
        peakRSSBytes: ResourceUsage.peakResidentBytes()))
    report.complete(with: records, gates: options.gates)
    report.warnings = plan.warnings
    report.notes = plan.notes
    if !adopted.isEmpty {
      report.warnings.append(
        "resumed an interrupted run: \(adopted.count) of \(plan.layout.shards.count) output shards were already written and still matched their checksums"
      )
    }
    if let recipe = options.recipe {
      try folder.write(recipe.yamlText(), to: Recipe.fileName)
    }
    if let split = options.split {
      try folder.write(Format.json(PartRecords(split: split, records: records)), to: PartRecords.fileName)
    }
    try report.write(into: folder)
    let manifest = try Manifest.build(
      folder: folder.staging, tool: SwiftCompressVersion.current, options: manifestOptions, reports: Report.fileNames,
      known: journal.shards.map(\.file))
    try folder.write(Format.json(manifest), to: Manifest.fileName)
    try folder.commit()
    return report
  }

  /// Plans `pass` over `options.input` as `run` would, and writes nothing: the per-tensor
  /// outputs with their sizes, the totals, and the size gates (the error gates need a run).
  public static func dryRun(pass: any CompressionPass, options: CompressionOptions) throws -> PlanReport {
    guard options.maxShardSize > 0 else {
      throw SwiftCompressError.invalidOption(option: "--max-shard-size", reason: "must be positive")
    }
    let checkpoint = try Checkpoint.open(options.input)
    let plan = try plan(checkpoint, pass: try pass.prepared(for: checkpoint), options: options)
    if options.strict, !plan.warnings.isEmpty { throw SwiftCompressError.strictWarnings(plan.warnings) }
    var entries: [Report.TensorEntry] = []
    for entry in plan.entries {
      let info = entry.tensor.info
      let outputs = entry.outputs.map { planned in
        Report.OutputTensor(
          name: planned.name, dtype: planned.dtype.rawValue, shape: planned.shape, bytes: planned.byteCount ?? 0,
          file: plan.layout.shards[plan.shardOfOutput[planned.name] ?? 0].fileName)
      }
      let after = outputs.reduce(0) { $0 + $1.bytes }
      let parameters = plan.pass.parameters(of: entry)
      let reason: String? =
        switch entry.action {
        case .keep(let why): why
        case .transform(let note): note
        }
      entries.append(
        Report.TensorEntry(
          name: entry.tensor.name, dtype: info.dtype.rawValue, shape: info.shape, parameters: parameters,
          action: entry.action.isKeep ? "kept" : "transformed", reason: reason, outputs: outputs,
          bytesBefore: info.byteCount, bytesAfter: after,
          bitsPerWeightBefore: bitsPerWeight(info.byteCount, parameters),
          bitsPerWeightAfter: bitsPerWeight(after, parameters), metrics: nil))
    }
    let totals = Report.Totals(tensors: entries, metrics: nil)
    var sizeGates = options.gates
    sizeGates.maxError = nil
    sizeGates.minSQNR = nil
    return PlanReport(
      command: options.command, input: options.input, output: options.output, files: plan.layout.shards.map(\.fileName),
      tensors: entries, totals: totals, gates: sizeGates.check(totals), warnings: plan.warnings,
      notes: plan.notes)
  }

  /// For `--explain`: per input tensor, how the selection and the pass (each recipe
  /// stage, each override) decided.
  public static func explain(pass: any CompressionPass, options: CompressionOptions) throws -> [(
    tensor: String, lines: [String]
  )] {
    let checkpoint = try Checkpoint.open(options.input)
    let pass = try pass.prepared(for: checkpoint)
    var result: [(String, [String])] = []
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      let lines: [String] =
        switch options.selection.decide(descriptor, defaults: pass.usesDefaultSelection) {
        case .skipped(let reason): ["not selected: \(reason)"]
        case .selected: try pass.explanation(for: descriptor, selection: options.selection)
        }
      result.append((tensor.name, lines))
    }
    return result
  }

  /// `SWIFTCOMPRESS_TEST_KILL_AFTER_SHARDS=N`: a test hook that SIGKILLs the process (or
  /// with `SWIFTCOMPRESS_TEST_KILL_SIGNAL=INT` interrupts it) once N output shards are
  /// journaled, so the resume tests interrupt a run at a known point.
  static let killAfterShards: Int? = ProcessInfo.processInfo.environment["SWIFTCOMPRESS_TEST_KILL_AFTER_SHARDS"]
    .flatMap { Int($0) }

  /// What determines an output's bytes, for its manifest: never paths or timings, so
  /// identical runs write identical manifests.
  static func manifestOptions(checkpoint: Checkpoint, pass: any CompressionPass, options: CompressionOptions)
    -> [String: String]
  {
    let inputs = checkpoint.files.map { file in
      let header = file.mapping.bytes(0..<file.dataStart)
      return "\((file.path as NSString).lastPathComponent):\(file.mapping.size):\(Manifest.hexCRC(header))"
    }
    return [
      "command": options.command, "pass": type(of: pass).identifier, "configuration": pass.configurationJSON,
      "include": Format.compactJSON(options.selection.include),
      "exclude": Format.compactJSON(options.selection.exclude),
      "max_shard_size": "\(options.maxShardSize)", "input_files": inputs.joined(separator: ","),
    ]
  }

  static func bitsPerWeight(_ bytes: Int, _ parameters: Int) -> Double {
    parameters > 0 ? Double(bytes) * 8 / Double(parameters) : 0
  }

  static func seconds(_ duration: Duration) -> Double {
    let (s, attoseconds) = duration.components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}

/// Process resource usage.
public enum ResourceUsage {
  /// Peak resident set size of this process, in bytes. On Linux this is VmHWM of
  /// /proc/self/status, which (unlike getrusage) does not include the peak of the
  /// process image this one was exec'd from.
  public static func peakResidentBytes() -> Int {
    #if os(Linux)
      if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
      {
        return kilobytes * 1024
      }
    #endif
    var usage = rusage()
    #if os(Linux)
      guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
      return Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
    #else
      guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
      return Int(usage.ru_maxrss)  // bytes on Darwin
    #endif
  }
}
