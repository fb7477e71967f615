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
  /// `--jobs`: worker threads of the data-parallel loops, bound for the run's duration
  /// (`Parallel.withJobs`); nil for one per core. The output bytes do not depend on it.
  public var jobs: Int?
  /// The input the user named, when `input` is an intermediate copy of it (`quantize --rotate`
  /// reads the rotated copy, removed after the run): the report names this one. nil: `input`.
  public var namedInput: String?
  /// Notes added to the plan's (shown on stderr and in the report), such as what made the
  /// intermediate input.
  public var notes: [String] = []

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

/// The pipeline driver. A run is a sequence of named steps:
/// - plan (`prepare`, Planner.swift): every decision before any data is read;
/// - stage (`Staging`): the staging folder, taken over from an interrupted run when it
///   can be resumed, with the files beside the weights;
/// - stream (`TensorStreamer`, Streamer.swift): the tensors transformed, by default one
///   at a time (read, transform, write, release), so peak memory stays near the largest
///   tensor rather than the model size, into
/// - the writer (`OutputWriter`): output shards, each journaled (`Journal`) as it is
///   finished, and the records of the tensors;
/// - report and commit (Commit.swift): the report (rendered while the last outputs are
///   written), the manifest, the rename into place.
public enum Compressor {
  /// Runs `pass` from `options.input` to `options.output` and returns the report,
  /// which is also written into the output folder.
  public static func run(
    pass: any CompressionPass, options: CompressionOptions,
    progress: (@Sendable (ProgressUpdate) -> Void)? = nil
  ) throws -> Report {
    try run(pass: pass, options: options, streamer: TensorByTensorStreamer(), progress: progress)
  }

  /// The steps of a run: plan, stage, stream (with `streamer`) into the writer, which
  /// journals each finished shard, then report and commit.
  static func run(
    pass: any CompressionPass, options: CompressionOptions, streamer: some TensorStreamer,
    progress: (@Sendable (ProgressUpdate) -> Void)?
  ) throws -> Report {
    let started = ContinuousClock.now
    return try Parallel.withJobs(options.jobs) {
      let (checkpoint, plan) = try prepare(pass, options: options)
      let identity = manifestOptions(checkpoint: checkpoint, pass: plan.pass, options: options)
      let staging = try Staging(plan: plan, checkpoint: checkpoint, options: options, identity: identity)
      let editedFiles = try staging.writeAuxiliaryFiles(of: checkpoint, plan: plan)
      let writer = OutputWriter(
        plan: plan, checkpoint: checkpoint, staging: staging, split: options.split, started: started,
        progress: progress)
      try Parallel.withSideJobs(writer.writesBehind) { try streamer.stream(plan, from: checkpoint, into: writer) }
      // Every tensor is transformed and recorded; the last one's outputs may still wait
      // to be written, which `commit` does beside the report's renderings.
      let report = report(
        checkpoint: checkpoint, plan: plan, options: options, staging: staging, editedFiles: editedFiles,
        records: writer.records, seconds: seconds(ContinuousClock.now - started))
      try commit(
        report, records: writer.records, into: staging.folder, options: options, identity: identity, writer: writer)
      return report
    }
  }

  /// Plans `pass` over `options.input` as `run` would, and writes nothing: the per-tensor
  /// outputs with their sizes, the totals, and the size gates (the error gates need a run).
  public static func dryRun(pass: any CompressionPass, options: CompressionOptions) throws -> PlanReport {
    try Parallel.withJobs(options.jobs) { try dryRun(prepare(pass, options: options).plan, options: options) }
  }

  static func dryRun(_ plan: CompressionPlan, options: CompressionOptions) -> PlanReport {
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
      command: options.command, input: options.namedInput ?? options.input, output: options.output,
      files: plan.layout.shards.map(\.fileName),
      tensors: entries, totals: totals, gates: sizeGates.check(totals), warnings: plan.warnings,
      notes: plan.notes)
  }

  /// For `--explain`: per input tensor, how the selection and the pass (each recipe
  /// stage, each override) decided.
  public static func explain(pass: any CompressionPass, options: CompressionOptions) throws -> [(
    tensor: String, lines: [String]
  )] {
    try Parallel.withJobs(options.jobs) {
      let checkpoint = try Checkpoint.open(options.input)
      let pass = try pass.prepared(for: checkpoint)
      let selection = options.selection.adapted(to: ModelAdapters.adapter(for: checkpoint))
      var result: [(String, [String])] = []
      for tensor in checkpoint.tensors {
        let descriptor = TensorDescriptor(tensor.info)
        let lines: [String] =
          switch selection.decide(descriptor, defaults: pass.usesDefaultSelection) {
          case .skipped(let reason): ["not selected: \(reason)"]
          case .selected: try pass.explanation(for: descriptor, selection: selection)
          }
        result.append((tensor.name, lines))
      }
      return result
    }
  }

  /// What determines an output's bytes, for its manifest (and the journal a resumed
  /// run must match): never paths or timings, so identical runs write identical
  /// manifests. A part of a split run records which part it is.
  static func manifestOptions(checkpoint: Checkpoint, pass: any CompressionPass, options: CompressionOptions)
    -> [String: String]
  {
    let inputs = checkpoint.files.map { file in
      let header = file.mapping.bytes(0..<file.dataStart)
      return "\((file.path as NSString).lastPathComponent):\(file.mapping.size):\(Manifest.hexCRC(header))"
    }
    var identity = [
      "command": options.command, "pass": type(of: pass).identifier, "configuration": pass.configurationJSON,
      "include": Format.compactJSON(options.selection.include),
      "exclude": Format.compactJSON(options.selection.exclude),
      "max_shard_size": "\(options.maxShardSize)", "input_files": inputs.joined(separator: ","),
    ]
    if let split = options.split { identity["shard"] = "\(split.index)/\(split.count)" }
    return identity
  }

  static func bitsPerWeight(_ bytes: Int, _ parameters: Int) -> Double {
    parameters > 0 ? Double(bytes) * 8 / Double(parameters) : 0
  }

  static func seconds(_ duration: Duration) -> Double {
    let (s, attoseconds) = duration.components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
