import CKernels
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A tensor's header entry (name, dtype, shape): a tensor as it will be written, or
/// as a pass is told about it before its data is read.
public struct PlannedTensor: Sendable, Equatable, Hashable, Codable {
  public var name: String
  public var dtype: DType
  public var shape: [Int]

  public init(name: String, dtype: DType, shape: [Int]) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
  }

  /// The header entry of a tensor read from a file.
  public init(_ info: TensorInfo) {
    self.init(name: info.name, dtype: info.dtype, shape: info.shape)
  }

  /// Element count, nil on overflow.
  public var elementCount: Int? { CheckpointIO.elementCount(of: shape) }
  /// Stored size, nil on overflow or a fractional byte count.
  public var byteCount: Int? { elementCount.flatMap { dtype.byteCount(elementCount: $0) } }
}

/// Writes one safetensors file as a stream.
///
/// The header is computed from the planned tensors before any data is written and
/// padded with spaces to a multiple of 8 bytes (so every tensor's data starts
/// 8-byte aligned). Tensors are then written in plan order, each in one or more
/// chunks. Everything goes to a temporary file beside the destination, renamed into
/// place by `finish()`; an unfinished writer deletes its temporary file.
///
/// The writer sums the CRC-32 of every byte it puts in the file as it goes (`crc32`),
/// so a finished file's checksum needs no second pass over it.
public final class SafeTensorsWriter {
  public let destination: String
  public let tensors: [PlannedTensor]
  private let sizes: [Int]
  private let temporaryPath: String
  fileprivate var fd: Int32
  private var current = 0
  private var writtenInCurrent = 0
  private var finished = false
  private var kernelCopyAvailable = true
  /// Planned tensor bytes not yet written.
  public private(set) var remainingBytes: Int
  /// zlib's CRC-32 of the bytes written so far, from the first byte of the file: the
  /// file's CRC-32 once `isComplete`.
  public private(set) var crc32: UInt32 = 0
  /// Total file size once finished.
  public let fileSize: Int

  /// The header bytes (length prefix excluded) for `tensors` in this order.
  public static func header(for tensors: [PlannedTensor], metadata: [String: String]?) throws(CheckpointError)
    -> [UInt8]
  {
    var json = "{"
    var first = true
    if let metadata {
      json += "\"__metadata__\":{"
      json += metadata.keys.sorted().map { JSONText.quoted($0) + ":" + JSONText.quoted(metadata[$0]!) }
        .joined(separator: ",")
      json += "}"
      first = false
    }
    var offset = 0
    var names = Set<String>()
    for tensor in tensors {
      guard names.insert(tensor.name).inserted, tensor.name != "__metadata__" else {
        throw .writerMisuse(path: "header", reason: "tensor name '\(tensor.name)' planned twice")
      }
      guard let size = tensor.byteCount else {
        throw .writerMisuse(path: "header", reason: "tensor '\(tensor.name)' has no valid byte size")
      }
      if !first { json += "," }
      first = false
      json += JSONText.quoted(tensor.name)
      json += ":{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":["
      json += tensor.shape.map(String.init).joined(separator: ",")
      json += "],\"data_offsets\":[\(offset),\(offset + size)]}"
      offset += size
    }
    json += "}"
    var bytes = Array(json.utf8)
    let padding = (8 - bytes.count % 8) % 8
    bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
    return bytes
  }

  /// Creates the temporary file and writes the header.
  public init(destination: String, tensors: [PlannedTensor], metadata: [String: String]? = nil)
    throws(CheckpointError)
  {
    self.destination = destination
    self.tensors = tensors
    self.sizes = tensors.map { $0.byteCount ?? 0 }
    remainingBytes = sizes.reduce(0, +)
    let header = try SafeTensorsWriter.header(for: tensors, metadata: metadata)
    fileSize = 8 + header.count + sizes.reduce(0, +)
    let directory = (destination as NSString).deletingLastPathComponent
    let base = (destination as NSString).lastPathComponent
    temporaryPath =
      (directory.isEmpty ? "" : directory + "/") + ".\(base).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      let reason = errnoDescription()
      throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
    }
    var prefix = [UInt8](repeating: 0, count: 8)
    var length = UInt64(header.count)
    for i in 0..<8 {
      prefix[i] = UInt8(truncatingIfNeeded: length)
      length >>= 8
    }
    do {
      try prefix.withUnsafeBytes { try writeAll($0) }
      try header.withUnsafeBytes { try writeAll($0) }
    } catch {
      abandon()
      throw (error as? CheckpointError)
        ?? .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: "\(error)")
    }
  }

  deinit {
    if !finished { abandon() }
  }

  /// The name of the tensor the next bytes belong to, nil when all are written.
  public var nextTensor: String? { current < tensors.count ? tensors[current].name : nil }

  /// True when every planned byte has been written (tensors of size zero need no write).
  public var isComplete: Bool { remainingBytes == 0 }

  /// Appends `bytes` to tensor `name`, which must be the tensor being written. A
  /// tensor may be written in several chunks; a chunk never crosses into the next.
  public func write(_ name: String, _ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
    try checkNext(name, count: bytes.count)
    try writeAll(bytes)
    advance(by: bytes.count)
  }

  /// Checks that `count` more bytes of `name` fit the plan.
  private func checkNext(_ name: String, count: Int) throws(CheckpointError) {
    // Tensors of size zero may be written (with no bytes) or passed over.
    while current < tensors.count && sizes[current] == 0 && tensors[current].name != name { current += 1 }
    // A finished file may still be told about its trailing tensors of size zero
    // (`isComplete` is true before they are written).
    guard current < tensors.count, tensors[current].name == name, !finished || sizes[current] == 0 else {
      throw .writerMisuse(
        path: destination, reason: "wrote '\(name)' but the next planned tensor is '\(nextTensor ?? "none")'")
    }
    guard writtenInCurrent + count <= sizes[current] else {
      throw .writerMisuse(
        path: destination,
        reason: "'\(name)' received \(writtenInCurrent + count) bytes but was planned with \(sizes[current])")
    }
  }

  private func advance(by count: Int) {
    remainingBytes -= count
    writtenInCurrent += count
    if writtenInCurrent == sizes[current] {
      current += 1
      writtenInCurrent = 0
    }
  }

  /// Appends `range` of `source` to tensor `name`, copied inside the kernel
  /// (copy_file_range) when the file systems allow it, otherwise written from the
  /// mapping. Same rules as `write`.
  public func copy(_ name: String, from source: MappedFile, range: Range<Int>) throws(CheckpointError) {
    var offset = range.lowerBound
    while offset < range.upperBound && kernelCopyAvailable {
      // Validate order and size exactly as a write would, before copying.
      try checkNext(name, count: range.upperBound - offset)
      let n = sck_copy_file_range(source.descriptor, Int64(offset), fd, range.upperBound - offset)
      if n > 0 {
        // The copied bytes never enter this process: their checksum is read from the
        // source, whose pages leave the resident set as they are summed.
        let copied = offset..<(offset + Int(n))
        let crc = Manifest.crc32(source.bytes(copied)) { summed in
          source.release((copied.lowerBound + summed.lowerBound)..<(copied.lowerBound + summed.upperBound))
        }
        crc32 = sck_crc32_combine(crc32, crc, UInt64(n))
        advance(by: Int(n))
        offset += Int(n)
      } else if n == 0 || n == -Int64(EXDEV) || n == -Int64(ENOSYS) || n == -Int64(EINVAL) || n == -Int64(EOPNOTSUPP) {
        kernelCopyAvailable = false  // fall back to plain writes for this file
      } else if n == -Int64(EINTR) {
        continue
      } else {
        let reason = errnoDescription(Int32(-n))
        abandon()
        throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
      }
    }
    if offset < range.upperBound {
      try write(name, source.bytes(offset..<range.upperBound))
    } else if range.isEmpty {
      try write(name, UnsafeRawBufferPointer(start: nil, count: 0))
    }
  }

  /// Closes the file and renames it into place. Every planned tensor must be complete.
  public func finish() throws(CheckpointError) {
    guard !finished else { return }
    guard isComplete else {
      let missing = tensors[current].name
      abandon()
      throw .writerMisuse(path: destination, reason: "finished before tensor '\(missing)' was written")
    }
    if close(fd) != 0 {
      let reason = errnoDescription()
      fd = -1
      abandon()
      throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
    }
    fd = -1
    if rename(temporaryPath, destination) != 0 {
      let reason = errnoDescription()
      abandon()
      throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
    }
    finished = true
  }

  /// Deletes the temporary file; the destination is left untouched.
  public func abandon() {
    if fd >= 0 {
      close(fd)
      fd = -1
    }
    unlink(temporaryPath)
    finished = true
  }

  private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
    guard var pointer = bytes.baseAddress else { return }
    if bytes.count >= Self.parallelWriteThreshold, let crc = try writeInParallel(bytes) {
      crc32 = sck_crc32_combine(crc32, crc, UInt64(bytes.count))
      return
    }
    crc32 = sck_crc32(crc32, pointer, bytes.count)
    var remaining = bytes.count
    while remaining > 0 {
      let n = systemWrite(fd, pointer, min(remaining, 1 << 30))
      if n < 0 {
        if errno == EINTR { continue }
        let reason = errnoDescription()
        abandon()
        throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
      }
      pointer += n
      remaining -= n
    }
  }
}

extension SafeTensorsWriter {
  /// Writes of at least this many bytes are split across the cores.
  static let parallelWriteThreshold = 16 << 20

  /// Writes `bytes` at the current offset as one slice per core with pwrite(2), then
  /// moves the offset past them. Copying into the page cache is most of a large write's
  /// cost, and it runs on every core this way; the bytes on disk are the same. Returns
  /// the CRC-32 of `bytes` (each slice summed by the thread that writes it), or nil
  /// (nothing written) when the offset cannot be read.
  fileprivate func writeInParallel(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) -> UInt32? {
    let start = lseek(fd, 0, SEEK_CUR)
    guard start >= 0, let base = bytes.baseAddress else { return nil }
    let slices = max(1, min(Parallel.jobs, 8))
    let sliceSize = (bytes.count + slices - 1) / slices
    var failures = [Int32](repeating: 0, count: slices)
    var crcs = [UInt32](repeating: 0, count: slices)
    let descriptor = fd
    let count = bytes.count
    failures.withUnsafeMutableBufferPointer { out in
      crcs.withUnsafeMutableBufferPointer { crcOut in
        nonisolated(unsafe) let (out, crcOut, base) = (out, crcOut, base)
        Parallel.perform(iterations: slices) { slice in
          var offset = slice * sliceSize
          let end = min(count, offset + sliceSize)
          crcOut[slice] = sck_crc32(0, base + offset, max(0, end - offset))
          while offset < end {
            let n = pwrite(descriptor, base + offset, min(end - offset, 1 << 30), off_t(start) + off_t(offset))
            if n < 0 {
              if errno == EINTR { continue }
              out[slice] = errno
              return
            }
            offset += n
          }
        }
      }
    }
    if let failure = failures.first(where: { $0 != 0 }) {
      let reason = errnoDescription(failure)
      abandon()
      throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
    }
    guard lseek(fd, start + off_t(bytes.count), SEEK_SET) >= 0 else {
      let reason = errnoDescription()
      abandon()
      throw .cannotCreateOutput(path: OutputCleanup.displayPath(destination), reason: reason)
    }
    var crc = crcs[0]
    for slice in 1..<slices {
      crc = sck_crc32_combine(crc, crcs[slice], UInt64(max(0, min(count, (slice + 1) * sliceSize) - slice * sliceSize)))
    }
    return crc
  }
}

/// `write(2)`, named apart from the writer's own `write` method.
@inline(__always)
func systemWrite(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
  write(fd, pointer, count)
}
