import CKernels
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// How planned tensors are split into output files.
public struct ShardLayout: Sendable, Equatable {
  public struct Shard: Sendable, Equatable {
    public var fileName: String
    public var tensors: [PlannedTensor]
    /// Sum of tensor data bytes (header excluded).
    public var dataByteCount: Int
  }

  public var shards: [Shard]
  /// Index file name when there is more than one shard.
  public var indexFileName: String?
  /// Sum of all tensor data bytes (the index's `total_size`).
  public var totalSize: Int

  /// Splits `tensors`, in order, into shards of at most `maxShardSize` data bytes,
  /// the way transformers' `save_pretrained` does: a new shard starts when the next
  /// tensor would push the current one over the limit, and a tensor larger than the
  /// limit gets a shard of its own. One shard is named `<stem>.safetensors`; several
  /// are `<stem>-00001-of-0000N.safetensors` with `<stem>.safetensors.index.json`.
  public init(tensors: [PlannedTensor], maxShardSize: Int, stem: String = "model") {
    var groups: [[PlannedTensor]] = []
    var sizes: [Int] = []
    var current: [PlannedTensor] = []
    var currentSize = 0
    for tensor in tensors {
      let size = tensor.byteCount ?? 0
      if !current.isEmpty && currentSize + size > maxShardSize {
        groups.append(current)
        sizes.append(currentSize)
        current = []
        currentSize = 0
      }
      current.append(tensor)
      currentSize += size
    }
    if !current.isEmpty || groups.isEmpty {
      groups.append(current)
      sizes.append(currentSize)
    }
    let count = groups.count
    func name(_ i: Int) -> String {
      if count == 1 { return "\(stem).safetensors" }
      let width = max(5, String(count).count)
      func pad(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
      }
      return "\(stem)-\(pad(i + 1))-of-\(pad(count)).safetensors"
    }
    shards = groups.enumerated().map {
      Shard(fileName: name($0.offset), tensors: $0.element, dataByteCount: sizes[$0.offset])
    }
    indexFileName = count > 1 ? "\(stem).safetensors.index.json" : nil
    totalSize = sizes.reduce(0, +)
  }

  /// The index JSON as transformers writes it (`json.dumps(indent=2, sort_keys=True)`
  /// plus a newline): `{"metadata": {"total_size": N}, "weight_map": {...}}`.
  public func indexJSON() -> String {
    var weightMap: [(String, String)] = []
    for shard in shards {
      for tensor in shard.tensors { weightMap.append((tensor.name, shard.fileName)) }
    }
    weightMap.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }  // Python's sort_keys order
    var text = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {"
    text += weightMap.isEmpty ? "}" : "\n"
    text += weightMap.map {
      "    " + JSONText.quoted($0.0, asciiOnly: true) + ": " + JSONText.quoted($0.1, asciiOnly: true)
    }
    .joined(separator: ",\n")
    if !weightMap.isEmpty { text += "\n  }" }
    text += "\n}\n"
    return text
  }
}

/// An output folder built in a staging folder beside the destination and renamed
/// into place at the end, so a destination either does not exist or is complete.
public final class OutputFolder {
  public let destination: String
  /// Where files are written until `commit()`.
  public let staging: String
  private let replace: Bool
  private var committed = false

  /// Prepares a staging folder for `destination`.
  ///
  /// - Parameters:
  ///   - inputs: resolved paths of the input files and folders; the destination may
  ///     not be one of them, contain one, or lie inside one.
  ///   - replace: allow replacing an existing destination (`--force`).
  ///   - adopting: an interrupted run's staging folder to take over (resume), of
  ///     which only the files named in `keep` are kept.
  public init(
    destination: String, inputs: [String], replace: Bool, adopting: String? = nil, keep: Set<String> = []
  ) throws(CheckpointError) {
    let resolved = URL(fileURLWithPath: destination).resolvingSymlinksInPath().standardizedFileURL.path
    for input in inputs {
      if resolved == input || resolved.hasPrefix(input + "/") || input.hasPrefix(resolved + "/") {
        throw .outputOverlapsInput(path: destination, input: input)
      }
    }
    if FileManager.default.fileExists(atPath: destination) && !replace {
      throw .outputExists(path: destination)
    }
    let parent = (resolved as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw .cannotCreateOutput(path: destination, reason: "the parent folder \(parent) does not exist")
    }
    self.destination = destination
    self.replace = replace
    // Staging folders of runs that were killed (SIGKILL cannot be caught) go first.
    OutputCleanup.removeStale(in: parent)
    staging =
      parent + "/" + OutputFolder.stagingPrefix(for: resolved) + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    // Registered before it exists, so that no concurrent run takes it for a stale one.
    OutputCleanup.register(staging, destination: destination)
    if let adopting {
      // Resume: take over an interrupted run's staging folder, keeping only `keep`.
      guard rename(adopting, staging) == 0 else {
        let reason = errnoDescription()
        OutputCleanup.unregister(staging)
        throw .cannotCreateOutput(path: destination, reason: "cannot take over \(adopting): \(reason)")
      }
      for name in (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? [] where !keep.contains(name) {
        try? FileManager.default.removeItem(atPath: staging + "/" + name)
      }
      return
    }
    if mkdir(staging, 0o755) != 0 {
      let reason = errnoDescription()
      OutputCleanup.unregister(staging)
      throw .cannotCreateOutput(path: destination, reason: "cannot create a folder in \(parent): \(reason)")
    }
  }

  /// The name every staging folder of `destination` starts with: `.<name>.partial-`,
  /// followed by the owner's pid.
  public static func stagingPrefix(for destination: String) -> String {
    let resolved = URL(fileURLWithPath: destination).resolvingSymlinksInPath().standardizedFileURL.path
    return "." + (resolved as NSString).lastPathComponent + ".partial-"
  }

  /// Staging folders beside `destination` left by runs that no longer exist (killed,
  /// crashed), as full paths.
  public static func staleStagingFolders(for destination: String) -> [String] {
    let resolved = URL(fileURLWithPath: destination).resolvingSymlinksInPath().standardizedFileURL.path
    let parent = (resolved as NSString).deletingLastPathComponent
    let prefix = stagingPrefix(for: destination)
    var stale: [String] = []
    for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(prefix) {
      let rest = name.dropFirst(prefix.count)
      guard let pid = Int32(rest.split(separator: "-").first ?? ""), !rest.hasSuffix(".old") else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH { stale.append(parent + "/" + name) }
    }
    return stale.sorted()
  }

  deinit {
    if !committed { discard() }
  }

  /// The path of `relative` inside the staging folder, creating its parent folders.
  public func path(for relative: String) throws(CheckpointError) -> String {
    let full = staging + "/" + relative
    let parent = (full as NSString).deletingLastPathComponent
    if parent != staging {
      do {
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
      } catch {
        throw .cannotCreateOutput(path: destination, reason: "cannot create \(parent): \(error.localizedDescription)")
      }
    }
    return full
  }

  /// Writes `text` as `relative`.
  public func write(_ text: String, to relative: String) throws(CheckpointError) {
    let bytes = Array(text.utf8)
    try writeFile(relative) { (fd) throws(CheckpointError) in
      if let failure = bytes.withUnsafeBytes({ Self.writeAll(fd, $0) }) { throw failure(destination + "/" + relative) }
    }
  }

  /// Copies `source` (following links) to `relative`.
  public func copy(from source: String, to relative: String) throws(CheckpointError) {
    let input = open(source, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else {
      throw .cannotCreateOutput(path: destination, reason: "cannot read \(source): \(errnoDescription())")
    }
    defer { close(input) }
    try writeFile(relative) { (fd) throws(CheckpointError) in
      var offset: Int64 = 0
      var kernelCopy = true
      var buffer = [UInt8](repeating: 0, count: 1 << 20)
      while true {
        if kernelCopy {
          let n = sck_copy_file_range(input, offset, fd, 1 << 30)
          if n > 0 {
            offset += n
            continue
          }
          if n == 0 { return }
          if n == -Int64(EINTR) { continue }
          if ![EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(Int32(-n)) {
            throw .cannotCreateOutput(path: destination + "/" + relative, reason: errnoDescription(Int32(-n)))
          }
          kernelCopy = false
        }
        let count = buffer.withUnsafeMutableBytes { pread(input, $0.baseAddress, $0.count, off_t(offset)) }
        if count < 0 && errno == EINTR { continue }
        if count < 0 {
          throw .cannotCreateOutput(path: destination, reason: "cannot read \(source): \(errnoDescription())")
        }
        if count == 0 { return }
        let failure = buffer.withUnsafeBytes { Self.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        if let failure { throw failure(destination + "/" + relative) }
        offset += Int64(count)
      }
    }
  }

  /// Creates `relative` in the staging folder and fills it; errors name the file as it
  /// will be in the destination, with the system's reason (EFBIG, ENOSPC, EACCES).
  private func writeFile(_ relative: String, _ fill: (Int32) throws(CheckpointError) -> Void)
    throws(CheckpointError)
  {
    let full = try path(for: relative)
    let shown = destination + "/" + relative
    let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .cannotCreateOutput(path: shown, reason: errnoDescription()) }
    do {
      try fill(fd)
    } catch {
      close(fd)
      throw error
    }
    if close(fd) != 0 { throw .cannotCreateOutput(path: shown, reason: errnoDescription()) }
  }

  /// Writes all of `bytes` to `fd`; on failure, a function making the error for a path.
  private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> ((String) -> CheckpointError)? {
    guard var pointer = bytes.baseAddress else { return nil }
    var remaining = bytes.count
    while remaining > 0 {
      let n = systemWrite(fd, pointer, remaining)
      if n < 0 {
        if errno == EINTR { continue }
        let reason = errnoDescription()
        return { .cannotCreateOutput(path: $0, reason: reason) }
      }
      pointer += n
      remaining -= n
    }
    return nil
  }

  /// Moves the staging folder to the destination, replacing an existing one when
  /// allowed.
  public func commit() throws(CheckpointError) {
    guard !committed else { return }
    let manager = FileManager.default
    let aside = staging + ".old"
    // Under the cleanup lock: an interruption waits for both renames, so it never
    // sees the old destination moved aside and the new one not yet in place.
    let failure: CheckpointError? = OutputCleanup.withLock {
      var displaced = false
      if manager.fileExists(atPath: destination) {
        guard replace else { return .outputExists(path: destination) }
        if rename(destination, aside) != 0 {
          return .cannotCreateOutput(
            path: destination, reason: "cannot move the existing output aside: \(errnoDescription())")
        }
        displaced = true
      }
      if rename(staging, destination) != 0 {
        let reason = errnoDescription()
        if displaced { _ = rename(aside, destination) }
        return .cannotCreateOutput(path: destination, reason: reason)
      }
      OutputCleanup.unregisterLocked(staging)
      if displaced { OutputCleanup.registerLocked(aside, destination: destination) }
      return nil
    }
    if let failure { throw failure }
    committed = true
    if manager.fileExists(atPath: aside) {
      try? manager.removeItem(atPath: aside)
      OutputCleanup.unregister(aside)
    }
  }

  /// Deletes the staging folder.
  public func discard() {
    OutputCleanup.removeTree(staging)
    OutputCleanup.unregister(staging)
    committed = true
  }
}
