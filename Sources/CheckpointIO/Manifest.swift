import CKernels
import Foundation

/// `swiftcompress-manifest.json`: every file of an output folder with its size and
/// zlib CRC-32, and the options that produced it. `verify` checks it; a rerun with the
/// same options compares against it. The report files are listed but not checksummed:
/// they hold timings, the only part of an output that differs between identical runs.
public struct Manifest: Codable, Sendable, Equatable {
  public static let fileName = "swiftcompress-manifest.json"

  public var schema = "swiftcompress-manifest"
  public var schemaVersion = 1
  /// The tool version that wrote it.
  public var tool: String
  /// What determines the bytes: command, pass and configuration, selection, shard size,
  /// and the input files (names, sizes, header checksums). Sorted keys.
  public var options: [String: String]
  /// Every other file, sorted by path (relative, `/`-separated).
  public var files: [Entry]
  /// Report files (timings inside): present, not checksummed.
  public var reports: [String]

  public struct Entry: Codable, Sendable, Equatable {
    public var path: String
    public var bytes: Int
    /// Eight lowercase hex digits.
    public var crc32: String

    public init(path: String, bytes: Int, crc32: UInt32) {
      self.path = path
      self.bytes = bytes
      self.crc32 = Manifest.hex(crc32)
    }
  }

  enum CodingKeys: String, CodingKey {
    case schema
    case schemaVersion = "schema_version"
    case tool, options, files, reports
  }

  public init(tool: String, options: [String: String], files: [Entry], reports: [String]) {
    self.tool = tool
    self.options = options
    self.files = files.sorted { $0.path < $1.path }
    self.reports = reports.sorted()
  }

  /// The CRC-32 of `bytes` as eight hex digits.
  public static func hexCRC(_ bytes: UnsafeRawBufferPointer) -> String { hex(crc32(bytes)) }

  static func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }

  /// The manifest of `folder`: every regular file below it, but `reports` (listed
  /// without checksums) and the manifest itself.
  /// `known` entries (files checksummed when they were finished) are taken as they are.
  public static func build(
    folder: String, tool: String, options: [String: String], reports: Set<String>, known: [Entry] = []
  ) throws(CheckpointError) -> Manifest {
    let known = Dictionary(known.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    var entries: [Entry] = []
    var listed: [String] = []
    for relative in try files(in: folder) where relative != fileName {
      if reports.contains(relative) {
        listed.append(relative)
        continue
      }
      if let entry = known[relative] {
        entries.append(entry)
        continue
      }
      let (bytes, crc) = try checksum(path: folder + "/" + relative)
      entries.append(Entry(path: relative, bytes: bytes, crc32: crc))
    }
    return Manifest(tool: tool, options: options, files: entries, reports: listed)
  }

  /// Regular files below `folder`, relative, sorted; hidden staging folders skipped.
  static func files(in folder: String) throws(CheckpointError) -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: folder) else {
      throw .unreadable(path: folder, reason: "cannot list the folder")
    }
    var result: [String] = []
    while let next = enumerator.nextObject() as? String {
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: folder + "/" + next, isDirectory: &isDirectory),
        !isDirectory.boolValue
      else { continue }
      result.append(next)
    }
    return result.sorted()
  }

  /// Size and CRC-32 of the file at `path`, read through a mapping in parallel chunks
  /// combined in order.
  public static func checksum(path: String) throws(CheckpointError) -> (bytes: Int, crc: UInt32) {
    let mapping = try MappedFile(path: path)
    guard mapping.size > 0 else { return (0, 0) }
    // Each chunk's pages leave the resident set once summed: checksumming a 5 GB shard
    // costs a few chunks of memory, not 5 GB.
    return (mapping.size, crc32(mapping.bytes(0..<mapping.size)) { mapping.release($0) })
  }

  /// zlib's CRC-32 of `bytes`, computed in 4 MiB chunks on `Parallel.jobs` threads (a read-back
  /// checksum then keeps at most a few chunks resident);
  /// `done` is called with each chunk's range once it is summed.
  public static func crc32(_ bytes: UnsafeRawBufferPointer, done: (Range<Int>) -> Void = { _ in }) -> UInt32 {
    let chunk = 4 << 20
    let count = bytes.count
    guard count > chunk, let base = bytes.baseAddress else {
      let crc = sck_crc32(0, bytes.baseAddress, count)
      done(0..<count)
      return crc
    }
    let chunks = (count + chunk - 1) / chunk
    var crcs = [UInt32](repeating: 0, count: chunks)
    crcs.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: chunks) { i in
        let range = (i * chunk)..<min(count, (i + 1) * chunk)
        out[i] = sck_crc32(0, base + range.lowerBound, range.count)
        done(range)
      }
    }
    var crc = crcs[0]
    for i in 1..<chunks {
      crc = sck_crc32_combine(crc, crcs[i], UInt64(min(chunk, count - i * chunk)))
    }
    return crc
  }

  /// Reads `folder`'s manifest, nil when it has none.
  public static func load(folder: String) throws(CheckpointError) -> Manifest? {
    let path = folder + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    guard let data = FileManager.default.contents(atPath: path),
      let manifest = try? JSONDecoder().decode(Manifest.self, from: data)
    else {
      throw .invalid(
        ValidationProblem(rule: .manifestMismatch, file: path, detail: "not a readable swiftcompress manifest"))
    }
    return manifest
  }

  /// Every difference between this manifest and the files in `folder`: a listed file
  /// missing or with another size or CRC-32, and a weight file it does not list.
  public func problems(in folder: String) -> [ValidationProblem] {
    var problems: [ValidationProblem] = []
    func problem(_ file: String, _ detail: String) {
      problems.append(ValidationProblem(rule: .manifestMismatch, file: folder + "/" + file, detail: detail))
    }
    for entry in files {
      let path = folder + "/" + entry.path
      guard FileManager.default.fileExists(atPath: path) else {
        problem(entry.path, "listed in the manifest but missing")
        continue
      }
      guard let (bytes, crc) = try? Manifest.checksum(path: path) else {
        problem(entry.path, "cannot be read")
        continue
      }
      if bytes != entry.bytes {
        problem(entry.path, "has \(bytes) bytes, the manifest says \(entry.bytes)")
      } else if Manifest.hex(crc) != entry.crc32 {
        problem(entry.path, "has CRC-32 \(Manifest.hex(crc)), the manifest says \(entry.crc32)")
      }
    }
    let listed = Set(files.map(\.path))
    for relative in (try? Manifest.files(in: folder)) ?? []
    where relative.hasSuffix(".safetensors") && !listed.contains(relative) {
      problem(relative, "a weight file the manifest does not list")
    }
    return problems
  }
}
