import CheckpointIO
import Foundation

// The plan step: every decision of a run, taken before any tensor data is read or
// written (selection, the pass's decision per tensor, output names, dtypes, shapes and
// sizes, the shard layout, config.json as the run writes it).

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

extension Compressor {
  /// The first step of a run (and of `dryRun`): checks the options, opens the input,
  /// prepares `pass` for it and plans it. With `--strict`, a warning of the plan stops
  /// here, before anything is written.
  static func prepare(_ pass: any CompressionPass, options: CompressionOptions) throws -> (
    checkpoint: Checkpoint, plan: CompressionPlan
  ) {
    guard options.maxShardSize > 0 else {
      throw SwiftCompressError.invalidOption(option: "--max-shard-size", reason: "must be positive")
    }
    let checkpoint = try Checkpoint.open(options.input)
    var plan = try plan(checkpoint, pass: try pass.prepared(for: checkpoint), options: options)
    plan.notes += options.notes
    if options.strict, !plan.warnings.isEmpty { throw SwiftCompressError.strictWarnings(plan.warnings) }
    return (checkpoint, plan)
  }

  /// Plans `pass` over `checkpoint`: selection, the pass's decision, output names,
  /// dtypes, shapes and sizes, and the shard layout. Throws before anything is
  /// written when a decision is invalid.
  public static func plan(
    _ checkpoint: Checkpoint, pass: any CompressionPass, options: CompressionOptions
  ) throws(SwiftCompressError) -> CompressionPlan {
    var entries: [PlanEntry] = []
    var producer: [String: String] = [:]
    // The default selection asks the checkpoint's model which tensors are embeddings.
    let selection = options.selection.adapted(to: ModelAdapters.adapter(for: checkpoint))
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      let unchanged = [PlannedTensor(name: tensor.name, dtype: tensor.info.dtype, shape: tensor.info.shape)]
      var entry: PlanEntry
      switch selection.decide(descriptor, defaults: pass.usesDefaultSelection) {
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
    plan.notes = pass.notes
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
}
