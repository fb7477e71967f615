import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A read-only, memory-mapped file. The whole file is mapped once; pages are read
/// by the kernel on first touch, so opening a 100 GB checkpoint costs nothing until
/// its tensors are used. `release(_:)` drops pages from this process's resident set
/// after a tensor has been processed, which keeps peak RSS near one tensor's size.
public final class MappedFile: @unchecked Sendable {
  // Immutable after init; the mapping is read-only, so sharing across threads is safe.
  public let path: String
  public let size: Int
  /// The open file, kept for in-kernel copies (`SafeTensorsWriter.copy`).
  public let descriptor: Int32
  private let base: UnsafeRawPointer?

  /// Maps `path` read-only.
  public init(path: String) throws(CheckpointError) {
    self.path = path
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
      let code = errno
      if code == ENOENT { throw .inputNotFound(path: path) }
      throw .unreadable(path: path, reason: errnoDescription(code))
    }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      let reason = errnoDescription()
      close(fd)
      throw .unreadable(path: path, reason: reason)
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      close(fd)
      throw .unreadable(path: path, reason: "not a regular file")
    }
    descriptor = fd
    size = Int(info.st_size)
    if size == 0 {
      base = nil
      return
    }
    let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
    guard let mapped, mapped != MAP_FAILED else {
      let reason = errnoDescription()
      close(fd)
      throw .unreadable(path: path, reason: "mmap failed: \(reason)")
    }
    base = UnsafeRawPointer(mapped)
  }

  deinit {
    if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    close(descriptor)
  }

  /// The bytes of `range`, which must lie inside the file (callers validate first).
  public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
    precondition(range.lowerBound >= 0 && range.upperBound <= size, "range outside the mapped file")
    guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
  }

  /// Hints that `range` will be read soon and sequentially.
  public func willNeed(_ range: Range<Int>) {
    advise(range, MADV_WILLNEED)
  }

  /// Drops the pages of `range` from this process's resident set. The data stays
  /// in the page cache, and a later access reads it again transparently.
  public func release(_ range: Range<Int>) {
    advise(range, MADV_DONTNEED)
  }

  private func advise(_ range: Range<Int>, _ advice: Int32) {
    guard let base, !range.isEmpty else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    // Only whole pages inside the range: never touch a neighbour's first or last page.
    let start = (range.lowerBound + page - 1) / page * page
    let end = range.upperBound == size ? range.upperBound : range.upperBound / page * page
    guard end > start else { return }
    _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, advice)
  }
}
