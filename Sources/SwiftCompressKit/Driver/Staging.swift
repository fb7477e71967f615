import CheckpointIO
import Foundation

/// The staging step: the folder the output is written into until it is committed,
/// taken over from an interrupted run of the same options when one left finished
/// shards behind (resume), with the files beside the weights already in it.
struct Staging {
  let folder: OutputFolder
  /// The journal this run continues: the interrupted run's (its shards that still
  /// match their checksums), or an empty one.
  var journal: Journal
  /// The output shards the interrupted run finished, which this run keeps as they are.
  let adopted: Set<Int>
  /// The records the interrupted run journaled, by input index.
  let journaled: [Int: TensorRecord]

  /// Creates the staging folder of `options.output`, or takes over the one an
  /// interrupted run with the same `identity` (its manifest options) left.
  init(plan: CompressionPlan, checkpoint: Checkpoint, options: CompressionOptions, identity: [String: String])
    throws
  {
    let resumed = Journal.resumable(destination: options.output, options: identity)
    journal = resumed?.journal ?? Journal(options: identity)
    folder = try OutputFolder(
      destination: options.output, inputs: checkpoint.inputPaths, replace: options.force, adopting: resumed?.staging,
      keep: Set(journal.shards.map(\.file.path)))
    let finished = Set(journal.shards.map(\.file.path))
    adopted = Set(plan.layout.shards.indices.filter { finished.contains(plan.layout.shards[$0].fileName) })
    var journaled: [Int: TensorRecord] = [:]
    for shard in journal.shards { for record in shard.records { journaled[record.index] = record } }
    self.journaled = journaled
  }

  /// Copies the input's files beside the weights, but those the plan drops, with
  /// config.json as the pass edited it and the plan's extra files (the loader guard's
  /// modeling file); returns the files written edited, for the report.
  func writeAuxiliaryFiles(of checkpoint: Checkpoint, plan: CompressionPlan) throws -> [String] {
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
    return editedFiles
  }
}
