import CheckpointIO
import Foundation
import TestSupport
import Testing

@Suite("safetensors writer and reader")
struct WriterReaderTests {
  /// The byte-exact output of the reference implementation's own serializer test
  /// (huggingface/safetensors, `test_serialization`): one F32 tensor "attn.0" of
  /// shape [1, 2, 3] holding 0...5.
  @Test func headerMatchesTheReferenceSerializerByteForByte() throws {
    let folder = TemporaryFolder()
    let path = folder.file("ref.safetensors")
    let writer = try SafeTensorsWriter(
      destination: path, tensors: [PlannedTensor(name: "attn.0", dtype: .f32, shape: [1, 2, 3])])
    try [Float](arrayLiteral: 0, 1, 2, 3, 4, 5).withUnsafeBytes { try writer.write("attn.0", $0) }
    try writer.finish()
    let expected: [UInt8] = [
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58,
      34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
      97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]
    #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == expected)
  }

  /// The reference's `test_empty`: no tensors, with and without metadata.
  @Test func emptyFilesMatchTheReference() throws {
    let folder = TemporaryFolder()
    let plain = folder.file("empty.safetensors")
    try SafeTensorsWriter(destination: plain, tensors: []).finish()
    #expect(
      Array(try Data(contentsOf: URL(fileURLWithPath: plain))) == [
        8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32,
      ])
    let withMetadata = folder.file("meta.safetensors")
    try SafeTensorsWriter(destination: withMetadata, tensors: [], metadata: ["framework": "pt"]).finish()
    let expected: [UInt8] = [
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102,
      114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]
    #expect(Array(try Data(contentsOf: URL(fileURLWithPath: withMetadata))) == expected)
    let file = try SafeTensorsFile(path: withMetadata)
    #expect(file.metadata == ["framework": "pt"])
    #expect(file.tensors.isEmpty)
  }

  @Test func everyDTypeRoundTripsThroughWriterAndReader() throws {
    let folder = TemporaryFolder()
    let path = folder.file("all.safetensors")
    var rng = SplitMix64(seed: 42)
    var planned: [PlannedTensor] = []
    var payloads: [[UInt8]] = []
    for (i, dtype) in DType.allCases.enumerated() {
      let shape = dtype == .f4 ? [3, 6] : [i % 3 + 1, 5]
      let tensor = PlannedTensor(name: "t.\(dtype.rawValue).weight", dtype: dtype, shape: shape)
      planned.append(tensor)
      payloads.append((0..<tensor.byteCount!).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
    }
    // Also a zero-size tensor and a scalar.
    planned.append(PlannedTensor(name: "empty", dtype: .f32, shape: [0, 4]))
    payloads.append([])
    planned.append(PlannedTensor(name: "scalar", dtype: .i64, shape: []))
    payloads.append([1, 0, 0, 0, 0, 0, 0, 0])

    let writer = try SafeTensorsWriter(destination: path, tensors: planned, metadata: ["format": "pt"])
    for (tensor, payload) in zip(planned, payloads) {
      // Write in two chunks to exercise chunked writing.
      let split = payload.count / 2
      try payload.withUnsafeBytes { bytes in
        try writer.write(tensor.name, UnsafeRawBufferPointer(rebasing: bytes[0..<split]))
        if payload.count > split {
          try writer.write(tensor.name, UnsafeRawBufferPointer(rebasing: bytes[split...]))
        }
      }
    }
    try writer.finish()

    let file = try SafeTensorsFile(path: path)
    #expect(file.metadata == ["format": "pt"])
    #expect(file.dataStart % 8 == 0)
    #expect(file.tensors.map(\.name) == planned.map(\.name))
    for (tensor, payload) in zip(planned, payloads) {
      let info = try #require(file.tensor(named: tensor.name))
      #expect(info.dtype == tensor.dtype)
      #expect(info.shape == tensor.shape)
      #expect(Array(file.bytes(of: info)) == payload)
    }
  }

  @Test func writerRefusesOutOfOrderAndOversizedWritesAndLeavesNothingBehind() throws {
    let folder = TemporaryFolder()
    let path = folder.file("x.safetensors")
    let tensors = [
      PlannedTensor(name: "a", dtype: .f32, shape: [2]), PlannedTensor(name: "b", dtype: .f32, shape: [1]),
    ]
    do {
      let writer = try SafeTensorsWriter(destination: path, tensors: tensors)
      #expect(throws: CheckpointError.self) {
        try [Float](repeating: 0, count: 1).withUnsafeBytes { try writer.write("b", $0) }
      }
      #expect(throws: CheckpointError.self) {
        try [Float](repeating: 0, count: 3).withUnsafeBytes { try writer.write("a", $0) }
      }
      try [Float](repeating: 0, count: 2).withUnsafeBytes { try writer.write("a", $0) }
      #expect(throws: CheckpointError.self) { try writer.finish() }  // "b" is missing
    }
    #expect(!FileManager.default.fileExists(atPath: path))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    #expect(throws: CheckpointError.self) {
      _ = try SafeTensorsWriter(destination: path, tensors: [tensors[0], tensors[0]])
    }
  }

  @Test func unfinishedWriterDoesNotReplaceAnExistingFile() throws {
    let folder = TemporaryFolder()
    let path = folder.file("keep.safetensors")
    _ = FileManager.default.createFile(atPath: path, contents: Data("original".utf8))
    do {
      let writer = try SafeTensorsWriter(destination: path, tensors: [PlannedTensor(name: "a", dtype: .u8, shape: [4])])
      try [UInt8](arrayLiteral: 1, 2).withUnsafeBytes { try writer.write("a", $0) }
      // Released without finish().
    }
    #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self) == "original")
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["keep.safetensors"])
  }

  @Test func tensorNamesNeedingEscapesRoundTrip() throws {
    let folder = TemporaryFolder()
    let path = folder.file("names.safetensors")
    let names = ["quote\"d", "back\\slash", "new\nline", "ünïcødé.😀", "tab\tand\u{01}control"]
    let planned = names.map { PlannedTensor(name: $0, dtype: .u8, shape: [1]) }
    let writer = try SafeTensorsWriter(destination: path, tensors: planned)
    for (i, name) in names.enumerated() { try [UInt8(i)].withUnsafeBytes { try writer.write(name, $0) } }
    try writer.finish()
    let file = try SafeTensorsFile(path: path)
    #expect(file.tensors.map(\.name) == names)
  }

  @Test func readerAcceptsEntriesInAnyHeaderOrderAndReportsFileOrder() throws {
    let folder = TemporaryFolder()
    let path = folder.file("order.safetensors")
    let header =
      #"{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#
    writeRawSafetensors(path, header: header, data: [1, 2, 3, 4])
    let file = try SafeTensorsFile(path: path)
    #expect(file.tensors.map(\.name) == ["a", "b"])
    #expect(Array(file.bytes(of: file.tensor(named: "b")!)) == [3, 4])
  }
}

@Suite("In-kernel tensor copies")
struct KernelCopyTests {
  /// `copy` gives the same file as `write`, both on the input's file system
  /// (copy_file_range) and across file systems (tmpfs: the fallback to plain writes).
  @Test(arguments: [NSTemporaryDirectory(), "/dev/shm/"])
  func copyEqualsWrite(_ directory: String) throws {
    guard FileManager.default.fileExists(atPath: directory) else { return }
    let source = try SafeTensorsFile(path: fixture("tiny-llama-f16/model.safetensors"))
    let planned = source.tensors.map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
    let copied = directory + "swiftcompress-copy-\(UUID().uuidString).safetensors"
    defer { try? FileManager.default.removeItem(atPath: copied) }
    let writer = try SafeTensorsWriter(destination: copied, tensors: planned, metadata: source.metadata)
    for tensor in source.tensors {
      try writer.copy(tensor.name, from: source.mapping, range: source.fileRange(of: tensor))
    }
    try writer.finish()
    #expect(FileManager.default.contentsEqual(atPath: copied, andPath: fixture("tiny-llama-f16/model.safetensors")))
    // The running checksum covers the copied bytes, which never passed through the writer.
    #expect(writer.crc32 == (try Manifest.checksum(path: copied)).crc)
    // A copy that does not fit the plan is refused before anything is copied.
    let wrong = try SafeTensorsWriter(destination: copied + ".2", tensors: [planned[0]])
    #expect(throws: CheckpointError.self) {
      try wrong.copy(planned[0].name, from: source.mapping, range: 0..<(planned[0].byteCount! + 1))
    }
    wrong.abandon()
  }
}

@Suite("The writer's running checksum")
struct WriterChecksumTests {
  /// The CRC-32 the writer sums as it writes equals the checksum read back from the
  /// finished file: for the header, chunked writes, an empty tensor, and writes large
  /// enough to be split across threads (the slices summed apart and combined), with one,
  /// two and three workers.
  @Test(arguments: [1, 2, 3])
  func equalsTheChecksumReadBack(jobs: Int) throws {
    let folder = NSTemporaryDirectory() + "swiftcompress-crc-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let large = (16 << 20) / 4 + 3  // F32 elements: past the 16 MiB from which writes are split
    let planned = [
      PlannedTensor(name: "a", dtype: .u8, shape: [1000]),
      PlannedTensor(name: "empty", dtype: .f32, shape: [0]),
      PlannedTensor(name: "b", dtype: .f32, shape: [large]),
    ]
    var generator = SplitMix64(seed: 17)
    let a = (0..<1000).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let b = (0..<(large * 4)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let path = folder + "/model.safetensors"
    let writer = try SafeTensorsWriter(destination: path, tensors: planned, metadata: ["format": "pt"])
    try Parallel.withJobs(jobs) {
      try a.withUnsafeBytes { bytes in
        try writer.write("a", UnsafeRawBufferPointer(rebasing: bytes[0..<300]))
        try writer.write("a", UnsafeRawBufferPointer(rebasing: bytes[300...]))
      }
      try b.withUnsafeBytes { try writer.write("b", $0) }
    }
    try writer.finish()
    let (size, crc) = try Manifest.checksum(path: path)
    #expect(size == writer.fileSize)
    #expect(writer.crc32 == crc)
    #expect(writer.remainingBytes == 0)
  }
}
