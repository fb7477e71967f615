// libFuzzer target over CheckpointIO's in-memory validators, built with
// `-sanitize=fuzzer,address` by `make fuzz` (see docs/fuzzing.md).
//
// SwiftPM links an executable target's `main` to this file's top-level code, so
// libFuzzer's own `main` is not used: the top-level code hands the command line to
// `LLVMFuzzerRunDriver`, which then behaves exactly like a stock libFuzzer binary.
import CFuzzerDriver
import CheckpointIO

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Feeds one input to the safetensors validator and to the index validator. When the
/// safetensors validator accepts the bytes, every tensor's byte range and the metadata
/// are read, so AddressSanitizer reports any view that leaves the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = UnsafeRawBufferPointer(start: data, count: size)
  let header = SafeTensorsFile.parseHeader(bytes: bytes)
  if header.problems.isEmpty {
    check(header, in: bytes)
  } else {
    for problem in header.problems { consume(problem.description) }
  }
  for problem in Checkpoint.validateIndex(bytes: bytes) { consume(problem.description) }
  return 0
}

/// Reads every byte the accepted header points at, and checks the layout invariants.
private func check(_ header: ParsedHeader, in bytes: UnsafeRawBufferPointer) {
  precondition(header.dataStart >= 8 && header.dataStart <= bytes.count, "data section outside the input")
  var end = 0
  var sum: UInt8 = 0
  for tensor in header.tensors {
    let range = tensor.dataOffsets
    precondition(range.lowerBound == end, "accepted a gap or an overlap before '\(tensor.name)'")
    precondition(header.dataStart + range.upperBound <= bytes.count, "'\(tensor.name)' ends past the input")
    precondition(tensor.byteCount * 8 == tensor.elementCount * tensor.dtype.bitsPerElement, "size mismatch")
    for offset in (header.dataStart + range.lowerBound)..<(header.dataStart + range.upperBound) {
      sum &+= bytes[offset]
    }
    consume(tensor.name)
    end = range.upperBound
  }
  precondition(header.dataStart + end == bytes.count, "accepted trailing bytes")
  for (key, value) in header.metadata ?? [:] {
    consume(key)
    consume(value)
  }
  blackHole = blackHole &+ sum
}

/// Where read bytes go, so the optimizer cannot drop the reads.
nonisolated(unsafe) private var blackHole: UInt8 = 0

/// Touches every UTF-8 byte of `text` so the optimizer keeps it.
private func consume(_ text: String) {
  for byte in text.utf8 { blackHole = blackHole &+ byte }
}

// Top-level code last: in main.swift, globals above are initialized in order first.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzz(data, size) })
