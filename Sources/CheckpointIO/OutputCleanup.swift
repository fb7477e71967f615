import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The unfinished outputs of this process, and stale ones of processes that died.
///
/// Every `OutputFolder` registers its staging folder here while it is being written,
/// so that a front end interrupted by a signal can remove them before exiting
/// (`removeAllBeforeExit`), and so that a new output does not mistake them for a dead
/// process's leftovers. A process killed outright (SIGKILL, a power cut) cannot clean
/// up: its `.<name>.partial-<pid>-<random>` staging folder stays beside the destination
/// until the next output is written in that folder, which removes it once no process
/// with that id runs (`removeStale(in:)`).
public enum OutputCleanup {
  struct Entry {
    /// The path to remove on interruption.
    var path: String
    /// The path the user asked for, for messages.
    var destination: String
  }

  private static let lock = NSLock()
  nonisolated(unsafe) private static var entries: [Entry] = []

  /// Adds `path`, to be removed if the process is interrupted (a staging folder, or an
  /// intermediate folder a front end writes for one output, such as `quantize --rotate`'s
  /// rotated copy).
  public static func register(_ path: String, destination: String) {
    lock.withLock { registerLocked(path, destination: destination) }
  }

  /// Forgets `path` (it was committed or removed).
  public static func unregister(_ path: String) {
    lock.withLock { unregisterLocked(path) }
  }

  static func registerLocked(_ path: String, destination: String) {
    entries.append(Entry(path: path, destination: destination))
  }

  static func unregisterLocked(_ path: String) {
    entries.removeAll { $0.path == path }
  }

  /// Runs `body` with the registry locked: an interruption waits until it is done,
  /// so a commit's renames are never cut in half by the cleanup.
  static func withLock<T>(_ body: () throws -> T) rethrows -> T {
    try lock.withLock(body)
  }

  /// `path` with a registered staging folder replaced by its destination, for
  /// messages about files that are written in the staging folder.
  static func displayPath(_ path: String) -> String {
    lock.withLock {
      for entry in entries where path.hasPrefix(entry.path + "/") {
        return entry.destination + path.dropFirst(entry.path.count)
      }
      return path
    }
  }

  /// Removes every registered staging folder and returns the destinations they were
  /// for. The registry stays locked, so nothing can be committed afterwards: call this
  /// only right before exiting the process (from a signal-handling thread, not from a
  /// signal handler).
  public static func removeAllBeforeExit() -> (removed: [String], kept: [String]) {
    lock.lock()  // never unlocked: the process exits next
    var removed: [String] = []
    var kept: [String] = []
    for entry in entries {
      if isResumable(entry.path) {
        kept.append(entry.destination)
      } else {
        removeTree(entry.path)
        removed.append(entry.destination)
      }
    }
    return (removed, kept)
  }

  /// The journal a run keeps in its staging folder once an output shard is finished:
  /// such a folder is left for the next run with the same options to resume.
  public static let journalFileName = "swiftcompress-journal.json"

  static func isResumable(_ staging: String) -> Bool {
    FileManager.default.fileExists(atPath: staging + "/" + journalFileName)
  }

  /// Removes `path` and everything below it, tolerating files that another thread of
  /// the interrupted process adds meanwhile.
  static func removeTree(_ path: String) {
    for _ in 0..<8 {
      try? FileManager.default.removeItem(atPath: path)
      var status = stat()
      if lstat(path, &status) != 0 { return }
    }
  }

  /// The process id in a staging name, `.<name>.partial-<pid>-<random>` (also with
  /// `.old`, a replaced destination moved aside), with the name and whether it is `.old`.
  static func parseStagingName(_ entry: String) -> (name: String, pid: pid_t, old: Bool)? {
    guard entry.hasPrefix(".") else { return nil }
    var rest = Substring(entry.dropFirst())
    let old = rest.hasSuffix(".old")
    if old { rest = rest.dropLast(4) }
    guard let marker = rest.range(of: ".partial-", options: .backwards) else { return nil }
    let name = rest[..<marker.lowerBound]
    let numbers = rest[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
    guard !name.isEmpty, numbers.count == 2, numbers[1].allSatisfy(\.isASCII), UInt32(numbers[1]) != nil,
      numbers[0].allSatisfy(\.isASCII), let pid = pid_t(numbers[0]), pid > 0
    else { return nil }
    return (String(name), pid, old)
  }

  /// True when a process `pid` may still be writing: it runs, or it is this process
  /// and the path is registered (an unregistered path with this process's id is left
  /// by an earlier process that had the same id, as in a container).
  static func isLive(pid: pid_t, path: String) -> Bool {
    if pid == getpid() {
      return lock.withLock { entries.contains { $0.path == path } }
    }
    return kill(pid, 0) == 0 || errno == EPERM
  }

  /// Removes the staging folders (and weight files' temporary files) in `folder` left
  /// by processes that no longer run, and returns their paths. A destination moved
  /// aside by `--force` whose replacement never arrived (the process died between the
  /// two renames) is moved back instead of removed.
  @discardableResult
  public static func removeStale(in folder: String) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
    var removed: [String] = []
    // Moved-aside destinations first, so a restored one is not removed with the rest.
    let candidates = names.compactMap { name in parseStagingName(name).map { (entry: name, parsed: $0) } }
      .sorted { $0.parsed.old && !$1.parsed.old }
    for (entry, parsed) in candidates {
      let path = folder + "/" + entry
      // A folder with a journal is left for its own destination's next run to resume
      // (which removes it when its options differ).
      guard !isLive(pid: parsed.pid, path: path), parsed.old || !isResumable(path) else { continue }
      if parsed.old {
        let original = folder + "/" + parsed.name
        var status = stat()
        if lstat(original, &status) != 0 && errno == ENOENT && rename(path, original) == 0 { continue }
      }
      removeTree(path)
      removed.append(path)
    }
    return removed
  }
}
