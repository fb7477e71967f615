import CheckpointIO
import Foundation
import TestSupport
import Testing

/// Files written by this library are read by the reference Python package
/// (safetensors + numpy + ml_dtypes, installed by `make test` into .build/venv).
@Suite("Interoperability with Python safetensors")
struct InteropTests {
  static let script = repositoryRoot + "/Tests/Interop/check_safetensors.py"

  func python() throws -> String {
    try #require(referencePython, "the reference Python is missing: run `make venv` (make test does)")
  }

  @Test func pythonReadsEveryDTypeThisLibraryWrites() throws {
    let python = try python()
    let source = try SafeTensorsFile(path: fixture("dtypes/all-dtypes.safetensors"))
    let folder = TemporaryFolder()
    let path = folder.file("written.safetensors")
    // Reverse order and a different layout than the reference writer's, same contents.
    let tensors = source.tensors.reversed().map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
    let writer = try SafeTensorsWriter(
      destination: path, tensors: tensors, metadata: ["format": "pt", "by": "swiftcompress"])
    for tensor in source.tensors.reversed() { try writer.write(tensor.name, source.bytes(of: tensor)) }
    try writer.finish()
    let result = try runProcess(python, [Self.script, "same-tensors", path, fixture("dtypes/all-dtypes.safetensors")])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
  }

  @Test func pythonReadsTheNumpyDTypesWithIdenticalValues() throws {
    let python = try python()
    // Only numpy dtypes, so safetensors' numpy loader (not only the raw reader) is used.
    let source = try Checkpoint.open(fixture("tiny-bert"))
    let folder = TemporaryFolder()
    let path = folder.file("bert.safetensors")
    let tensors = source.tensors.map { PlannedTensor(name: $0.name, dtype: $0.info.dtype, shape: $0.info.shape) }
    let writer = try SafeTensorsWriter(destination: path, tensors: tensors)
    for tensor in source.tensors { try writer.write(tensor.name, source.bytes(of: tensor)) }
    try writer.finish()
    let result = try runProcess(python, [Self.script, "same-tensors", path, fixture("tiny-bert/model.safetensors")])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
  }
}
