import CKernels
import CheckpointIO
import Dispatch
import Foundation

/// compressed-tensors' bitmask layouts for sparse weights (`sparse-bitmask` and
/// `sparse-24-bitmask`, as compressed-tensors 0.12 writes and reads them; later
/// versions keep only the configuration names). For a weight `<module>.weight`:
///
/// - `<module>.shape`: I64, the dense shape ([2], or [2, 1] for sparse-24-bitmask);
/// - `<module>.compressed`: the kept values in row-major order, in the weight's dtype
///   (1-D, or [rows, columns / 2] for sparse-24-bitmask);
/// - `<module>.bitmask`: U8 [rows, ceil(columns / 8)], bit j % 8 of byte j / 8 set for
///   a kept weight (numpy.packbits with bitorder="little", each row padded);
/// - `<module>.row_offsets` (sparse-bitmask only): I64 [rows], where each row's values
///   start in `compressed`.
///
/// The bitmask marks the weights pruning kept (including any that were zero already),
/// so the number of values is known when the output is planned; the reference
/// decompressor scatters the values by the mask and accepts it.
enum SparseBitmask {
  static let compressedTensorsVersion = "0.12.2"
  /// The `sparsity_config.format` names of these layouts.
  static let formats = ["sparse-bitmask", "sparse-24-bitmask"]

  static func encode(
    _ input: TensorInput, keep: [UInt8], rowKept: [Int], rows: Int, columns: Int, outputs: [PlannedTensor],
    twoFour: Bool
  ) throws(SwiftCompressError) -> [OutputData] {
    let elementSize = input.descriptor.dtype.bitsPerElement / 8
    let rowBytes = columns * elementSize
    let maskBytes = (columns + 7) / 8
    var offsets = [Int](repeating: 0, count: rows)
    var total = 0
    for row in 0..<rows {
      offsets[row] = total
      total += rowKept[row]
    }
    var values: [UInt8] = RowLoops.uninitialized(total * elementSize)
    var bitmask: [UInt8] = RowLoops.uninitialized(rows * maskBytes)
    let rowOffsets = offsets
    keep.withUnsafeBufferPointer { mask in
      values.withUnsafeMutableBytes { valuesOut in
        bitmask.withUnsafeMutableBytes { maskOut in
          nonisolated(unsafe) let (mask, valuesOut, maskOut) = (mask, valuesOut, maskOut)
          let blocks = (rows + 63) / 64
          Parallel.perform(iterations: blocks) { block in
            for row in (block * 64)..<min(rows, (block + 1) * 64) {
              _ = sck_gather_kept(
                input.bytes.baseAddress! + row * rowBytes, columns, elementSize, mask.baseAddress! + row * columns,
                valuesOut.baseAddress.map { $0 + rowOffsets[row] * elementSize }, maskOut.baseAddress! + row * maskBytes
              )
            }
          }
        }
      }
    }
    if twoFour {
      return [.owned(int64Bytes([rows, columns])), .owned(values), .owned(bitmask)]
    }
    return [.owned(int64Bytes([rows, columns])), .owned(values), .owned(bitmask), .owned(int64Bytes(offsets))]
  }

  static func int64Bytes(_ values: [Int]) -> [UInt8] {
    values.map { Int64($0).littleEndian }.withUnsafeBytes { Array($0) }
  }

  /// The dense bytes (rows x columns elements of `elementSize` bytes) of a bitmask-stored
  /// weight. Throws when the parts disagree.
  static func decode(
    name: String, values: TensorInput, bitmask: TensorInput, rows: Int, columns: Int
  ) throws(SwiftCompressError) -> [UInt8] {
    let elementSize = values.descriptor.dtype.bitsPerElement / 8
    let maskBytes = (columns + 7) / 8
    guard bitmask.descriptor.shape == [rows, maskBytes], bitmask.descriptor.dtype == .u8 else {
      throw .invalidTensor(
        name: bitmask.descriptor.name,
        reason: "has shape \(bitmask.descriptor.shape), expected U8 [\(rows), \(maskBytes)] for \(name)")
    }
    // Each row's start in the values, from the popcounts (row_offsets, when present,
    // must agree, which the values count checks overall).
    var offsets = [Int](repeating: 0, count: rows + 1)
    bitmask.bytes.withMemoryRebound(to: UInt8.self) { bits in
      for row in 0..<rows {
        var count = 0
        for byte in bits[(row * maskBytes)..<((row + 1) * maskBytes)] { count += byte.nonzeroBitCount }
        offsets[row + 1] = offsets[row] + count
      }
    }
    guard offsets[rows] == values.elementCount else {
      throw .invalidTensor(
        name: values.descriptor.name,
        reason: "holds \(values.elementCount) values but the bitmask of \(name) marks \(offsets[rows])")
    }
    let starts = offsets
    var dense: [UInt8] = RowLoops.uninitialized(rows * columns * elementSize)
    dense.withUnsafeMutableBytes { out in
      nonisolated(unsafe) let out = out
      let blocks = (rows + 63) / 64
      Parallel.perform(iterations: blocks) { block in
        for row in (block * 64)..<min(rows, (block + 1) * 64) {
          _ = sck_scatter_kept(
            values.bytes.baseAddress.map { $0 + starts[row] * elementSize }, columns, elementSize,
            bitmask.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + row * maskBytes,
            out.baseAddress! + row * columns * elementSize)
        }
      }
    }
    return dense
  }
}
