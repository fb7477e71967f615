import Foundation
import Synchronization

/// Drops a file-mapped tensor's pages from the resident set as the blocks of its rows
/// are done, so a tensor's mapped pages do not pile up while it is processed: a whole
/// 2 MiB region of the address space at a time, once every block that overlaps it is
/// done.
///
/// A file the kernel caches in large folios (any file read once, on ext4 with Linux 6.x)
/// is mapped 2 MiB at a time, and dropping part of such a region unmaps all of it: when
/// each block of 64 rows (1 MiB of F32 rows of 4096) dropped its own pages, the
/// neighbouring block, still at work on the other core, faulted the region in again, and
/// every drop interrupted that core to flush its TLB (15-16 ms of CPU in a 470 MB W4A16 run,
/// docs/benchmarks.md, issue 17 item 23). Pages at the tensor's ends that it shares with
/// its neighbours are kept, as are all pages of memory the process owns (dropping those
/// would zero them).
final class RowRelease: Sendable {
  /// log2 of the region size: 2 MiB, the size of a large mapping entry on x86-64 and
  /// arm64 with 4 KiB pages.
  static let regionShift = 21

  private let start: Int
  private let end: Int
  private let rowBytes: Int
  private let firstRegion: Int
  /// Per region from `firstRegion`, the blocks overlapping it that are not done.
  private let left: Mutex<[Int]>
  private let advise: @Sendable (Range<Int>) -> Void

  /// For `rows` rows of `rowBytes` bytes each, done in blocks of `blockRows` (the last
  /// one shorter). `advise` drops an address range (whole pages); tests replace it.
  init(
    _ input: TensorInput, rows: Int, rowBytes: Int, blockRows: Int,
    advise: @escaping @Sendable (Range<Int>) -> Void = RowRelease.dropPages
  ) {
    let base = input.bytes.baseAddress.map { Int(bitPattern: $0) } ?? 0
    let active = input.fileMapped && base != 0 && rows > 0 && rowBytes > 0 && blockRows > 0
    start = base
    end = base + (active ? rows * rowBytes : 0)
    self.rowBytes = rowBytes
    firstRegion = base >> Self.regionShift
    self.advise = advise
    var left: [Int] = []
    if active {
      left = Array(repeating: 0, count: ((end - 1) >> Self.regionShift) - firstRegion + 1)
      for lower in stride(from: 0, to: rows, by: blockRows) {
        let bytes = (base + lower * rowBytes)..<(base + min(rows, lower + blockRows) * rowBytes)
        for region in Self.regions(bytes) { left[region - firstRegion] += 1 }
      }
    }
    self.left = Mutex(left)
  }

  /// The regions the address range `bytes` (not empty) overlaps.
  private static func regions(_ bytes: Range<Int>) -> ClosedRange<Int> {
    (bytes.lowerBound >> regionShift)...((bytes.upperBound - 1) >> regionShift)
  }

  /// Marks the block of rows `rows` done (each block exactly once) and drops the
  /// regions no block still needs.
  func done(_ rows: Range<Int>) {
    guard end > start, !rows.isEmpty else { return }
    let regions = Self.regions((start + rows.lowerBound * rowBytes)..<(start + rows.upperBound * rowBytes))
    let finished = left.withLock { left in
      regions.filter { region in
        left[region - firstRegion] -= 1
        return left[region - firstRegion] == 0
      }
    }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    for region in finished {
      // The region's part of the tensor, in whole pages.
      let lower = (max(start, region << Self.regionShift) + page - 1) / page * page
      let upper = min(end, (region + 1) << Self.regionShift) / page * page
      if upper > lower { advise(lower..<upper) }
    }
  }

  /// madvise(MADV_DONTNEED) over the address range: the pages leave the resident set and
  /// are read again from the file if touched.
  @Sendable static func dropPages(_ range: Range<Int>) {
    guard let pointer = UnsafeMutableRawPointer(bitPattern: range.lowerBound) else { return }
    _ = madvise(pointer, range.count, MADV_DONTNEED)
  }
}
