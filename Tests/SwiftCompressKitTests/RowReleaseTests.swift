import CheckpointIO
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import SwiftCompressKit

/// `RowRelease`: a file-mapped tensor's pages leave the resident set in whole 2 MiB
/// regions once every block of rows overlapping a region is done, and all of them once
/// all blocks are.
@Suite("Row release")
struct RowReleaseTests {
  static let region = 1 << RowRelease.regionShift
  static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

  /// A tensor of `rows` rows of `rowBytes` at address `start` (never read: the release
  /// only computes addresses).
  static func input(start: Int, rows: Int, rowBytes: Int, fileMapped: Bool = true) -> TensorInput {
    TensorInput(
      descriptor: PlannedTensor(name: "m.weight", dtype: .u8, shape: [rows, rowBytes]),
      bytes: UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: start), count: rows * rowBytes),
      fileMapped: fileMapped)
  }

  struct Layout: Sendable, CustomStringConvertible {
    let start: Int, rows: Int, rowBytes: Int, blockRows: Int
    var description: String { "start +\(start % (1 << 21)), \(rows) x \(rowBytes), blocks of \(blockRows)" }
  }

  static let layouts: [Layout] = [
    // F32 rows of 4096 in blocks of 64 (1 MiB), the tensor 2 MiB-aligned or not.
    Layout(start: 0x7f00_0000_0000, rows: 256, rowBytes: 16384, blockRows: 64),
    Layout(start: 0x7f00_0000_0000 + 1128, rows: 256, rowBytes: 16384, blockRows: 64),
    // Blocks larger than a region, blocks of 16 rows, a last short block, a tensor inside one region.
    Layout(start: 0x7f00_0013_3000 + 8, rows: 301, rowBytes: 24576, blockRows: 200),
    Layout(start: 0x7f00_0001_0000 + 77, rows: 1000, rowBytes: 8192, blockRows: 16),
    Layout(start: 0x7f00_0000_4000 + 5, rows: 10, rowBytes: 1000, blockRows: 64),
  ]

  /// Marks every block done in a shuffled order (seed 17) and checks each drop as it
  /// happens: whole pages inside the tensor, never twice, never while a block that
  /// overlaps its region is not done; and at the end the drops cover every whole page of
  /// the tensor.
  @Test(arguments: layouts)
  func regionsAreDroppedOnceAndOnlyWhenNoBlockNeedsThem(_ layout: Layout) {
    let dropped = Mutex<[Range<Int>]>([])
    let release = RowRelease(
      Self.input(start: layout.start, rows: layout.rows, rowBytes: layout.rowBytes), rows: layout.rows,
      rowBytes: layout.rowBytes, blockRows: layout.blockRows
    ) { range in dropped.withLock { $0.append(range) } }
    let end = layout.start + layout.rows * layout.rowBytes
    let blocks = stride(from: 0, to: layout.rows, by: layout.blockRows).map {
      $0..<min(layout.rows, $0 + layout.blockRows)
    }
    func bytes(_ rows: Range<Int>) -> Range<Int> {
      (layout.start + rows.lowerBound * layout.rowBytes)..<(layout.start + rows.upperBound * layout.rowBytes)
    }
    var rng = SplitMix64(seed: 17)
    var done: [Range<Int>] = []
    for block in blocks.shuffled(using: &rng) {
      release.done(block)
      done.append(block)
      for range in dropped.withLock({ $0 }) {
        let regionStart = (range.lowerBound >> RowRelease.regionShift) << RowRelease.regionShift
        let region = regionStart..<(regionStart + Self.region)
        #expect(range.upperBound <= region.upperBound, "\(range) crosses a region")
        for pending in blocks where !done.contains(pending) {
          #expect(!bytes(pending).overlaps(region), "\(range) dropped while rows \(pending) still need it")
        }
      }
    }
    let ranges = dropped.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
    for range in ranges {
      #expect(range.lowerBound % Self.page == 0 && range.upperBound % Self.page == 0, "\(range)")
      #expect(range.lowerBound >= layout.start && range.upperBound <= end, "\(range) outside the tensor")
    }
    for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound <= b.lowerBound, "\(a) and \(b) overlap") }
    let firstPage = (layout.start + Self.page - 1) / Self.page * Self.page
    let lastPage = end / Self.page * Self.page
    #expect(ranges.reduce(0) { $0 + $1.count } == max(0, lastPage - firstPage))
  }

  /// The same from two threads at once: each region dropped once, all pages covered.
  @Test func blocksDoneConcurrentlyDropEachRegionOnce() {
    let layout = Self.layouts[1]
    let dropped = Mutex<[Range<Int>]>([])
    let release = RowRelease(
      Self.input(start: layout.start, rows: layout.rows, rowBytes: layout.rowBytes), rows: layout.rows,
      rowBytes: layout.rowBytes, blockRows: 1
    ) { range in dropped.withLock { $0.append(range) } }
    Parallel.withJobs(2) {
      Parallel.perform(iterations: layout.rows) { row in release.done(row..<(row + 1)) }
    }
    let ranges = dropped.withLock { $0 }
    #expect(Set(ranges.map(\.lowerBound)).count == ranges.count)
    let end = layout.start + layout.rows * layout.rowBytes
    #expect(
      ranges.reduce(0) { $0 + $1.count } == end / Self.page * Self.page - (layout.start + Self.page - 1) / Self.page
        * Self.page)
  }

  /// Memory the process owns is never dropped (it would read back as zeros).
  @Test func ownedMemoryIsNeverDropped() {
    let dropped = Mutex(0)
    let release = RowRelease(
      Self.input(start: 0x7f00_0000_0000, rows: 256, rowBytes: 16384, fileMapped: false), rows: 256, rowBytes: 16384,
      blockRows: 64
    ) { _ in dropped.withLock { $0 += 1 } }
    for lower in stride(from: 0, to: 256, by: 64) { release.done(lower..<(lower + 64)) }
    #expect(dropped.withLock { $0 } == 0)
  }

  /// On a real mapping: the tensor's pages, all resident after a read, leave the resident
  /// set once every block is done, and read back the same.
  @Test func aMappedTensorLeavesTheResidentSet() throws {
    let folder = TemporaryFolder()
    let path = folder.file("t.bin")
    let rows = 512
    let rowBytes = 16384
    let bytes = (0..<(rows * rowBytes + 4096)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let file = try MappedFile(path: path)
    let tensor = file.bytes(4096..<(4096 + rows * rowBytes))
    let input = TensorInput(
      descriptor: PlannedTensor(name: "m.weight", dtype: .u8, shape: [rows, rowBytes]), bytes: tensor, fileMapped: true)
    var sum = 0
    for i in stride(from: 0, to: tensor.count, by: Self.page) { sum &+= Int(tensor[i]) }
    let before = try Self.residentKiB(of: file.bytes(0..<file.size))
    #expect(before >= rows * rowBytes / 1024, "\(before) KiB resident after reading \(rows * rowBytes / 1024) KiB")
    let release = RowRelease(input, rows: rows, rowBytes: rowBytes, blockRows: 64)
    for lower in stride(from: 0, to: rows, by: 64) { release.done(lower..<(lower + 64)) }
    let after = try Self.residentKiB(of: file.bytes(0..<file.size))
    #expect(after <= 8, "\(after) KiB still resident")  // at most the shared first and last pages
    #expect(Array(tensor) == Array(bytes[4096...]))
    _ = sum
  }

  /// The resident KiB of the mapping that holds `bytes`, from /proc/self/smaps.
  static func residentKiB(of bytes: UnsafeRawBufferPointer) throws -> Int {
    let address = Int(bitPattern: bytes.baseAddress!)
    // Read to the end: Foundation's String(contentsOfFile:) stops at the first page of a
    // /proc file, whose size reads as 0.
    let handle = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
    let smaps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
    var inside = false
    for line in smaps.split(separator: "\n") {
      if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
        let low = Int(line[..<dash], radix: 16), let high = Int(line[line.index(after: dash)..<space], radix: 16)
      {
        inside = (low..<high).contains(address)
      } else if inside, line.hasPrefix("Rss:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
      }
    }
    return -1
  }
}
