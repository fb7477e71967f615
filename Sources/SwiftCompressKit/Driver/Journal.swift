import CheckpointIO
import Foundation

/// The journal of a run in progress, kept in its staging folder: the options (as in
/// the manifest) and every output shard finished so far, with its size, CRC-32 and the
/// records of the tensors done by then. A run killed before it finished leaves its
/// staging folder behind; the next run with the same options takes it over and skips
/// the shards whose files still match their journal entries (resume).
struct Journal: Codable, Sendable {
  static let fileName = OutputCleanup.journalFileName

  struct Shard: Codable, Sendable {
    var file: Manifest.Entry
    var records: [TensorRecord]
  }

  var options: [String: String]
  var shards: [Shard] = []

  /// The journal of an interrupted run of the same options beside `destination`, with
  /// only the shards whose files still match, and its staging folder. Stale staging
  /// folders of other options are removed.
  static func resumable(destination: String, options: [String: String]) -> (staging: String, journal: Journal)? {
    var found: (String, Journal)?
    for stale in OutputFolder.staleStagingFolders(for: destination) {
      if found == nil, let journal = load(stale), journal.options == options {
        var valid = journal
        valid.shards = journal.shards.filter { shard in
          guard let (bytes, crc) = try? Manifest.checksum(path: stale + "/" + shard.file.path) else { return false }
          return bytes == shard.file.bytes
            && Manifest.Entry(path: shard.file.path, bytes: bytes, crc32: crc) == shard.file
        }
        found = (stale, valid)
      } else {
        try? FileManager.default.removeItem(atPath: stale)
      }
    }
    return found
  }

  /// The journal step, after each finished shard: `file` joins the journal with the
  /// records of the tensors done since the last one, and the journal is written into
  /// `folder` aside and renamed, so an interruption never leaves half a journal.
  ///
  /// With `store` false the shard joins only this journal in memory (the run's last
  /// shard: the journal file is removed once the run is complete, and a run killed
  /// before then redoes only that shard).
  mutating func append(_ file: Manifest.Entry, records: [TensorRecord], in folder: OutputFolder, store: Bool = true)
    throws
  {
    shards.append(Shard(file: file, records: records))
    guard store else { return }
    try folder.write(Format.json(self), to: Self.fileName + ".tmp")
    guard rename(try folder.path(for: Self.fileName + ".tmp"), try folder.path(for: Self.fileName)) == 0 else {
      throw CheckpointError.cannotCreateOutput(path: folder.destination, reason: "cannot write the resume journal")
    }
  }

  static func load(_ folder: String) -> Journal? {
    guard let data = FileManager.default.contents(atPath: folder + "/" + fileName) else { return nil }
    return try? Format.decodeJSON(Journal.self, from: data)
  }
}
