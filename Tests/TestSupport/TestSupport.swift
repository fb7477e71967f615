import Foundation

// Shared by the test targets: fixture paths, temporary folders, seeded random numbers,
// raw file writing, the reference Python and the built executable.

/// The repository's Fixtures/ folder, found from this file's path.
public let fixturesRoot: String = {
  var url = URL(fileURLWithPath: #filePath)
  for _ in 0..<3 { url.deleteLastPathComponent() }
  return url.appendingPathComponent("Fixtures").path
}()

public func fixture(_ relative: String) -> String { fixturesRoot + "/" + relative }

/// A fresh temporary folder, removed when the value is released.
public final class TemporaryFolder {
  public let path: String
  public init() {
    path = NSTemporaryDirectory() + "swiftcompress-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  public func file(_ name: String) -> String { path + "/" + name }
}

/// Seeded, repeatable random numbers (SplitMix64).
public struct SplitMix64: RandomNumberGenerator {
  public var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in (0, 1].
  public mutating func uniform() -> Double {
    (Double(next() >> 11) + 1) / 9_007_199_254_740_992.0
  }

  /// Standard normal by Box-Muller.
  public mutating func gaussian() -> Float {
    let u1 = uniform()
    let u2 = uniform()
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}

/// Writes raw bytes: a length prefix, `header`, then `data`.
public func writeRawSafetensors(_ path: String, header: String, data: [UInt8], declaredLength: UInt64? = nil) {
  var bytes: [UInt8] = []
  var length = declaredLength ?? UInt64(header.utf8.count)
  for _ in 0..<8 {
    bytes.append(UInt8(truncatingIfNeeded: length))
    length >>= 8
  }
  bytes += Array(header.utf8) + data
  _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// The Python interpreter with numpy, safetensors and ml_dtypes (set by `make test`).
public let referencePython: String? = {
  if let path = ProcessInfo.processInfo.environment["SWIFTCOMPRESS_PYTHON"],
    FileManager.default.isExecutableFile(atPath: path)
  {
    return path
  }
  var url = URL(fileURLWithPath: #filePath)
  for _ in 0..<3 { url.deleteLastPathComponent() }
  let venv = url.appendingPathComponent(".build/venv/bin/python").path
  return FileManager.default.isExecutableFile(atPath: venv) ? venv : nil
}()

/// Runs a process and returns its exit status, stdout and stderr.
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String]) throws -> (
  status: Int32, stdout: String, stderr: String
) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  // Read both pipes before waiting so a chatty child cannot block.
  let errorData = FileHandleReader(err.fileHandleForReading)
  let outputData = out.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), errorData.text())
}

/// Reads a pipe on a background thread.
public final class FileHandleReader: @unchecked Sendable {
  private var data = Data()
  private let done = DispatchSemaphore(value: 0)
  public init(_ handle: FileHandle) {
    Thread.detachNewThread { [self] in
      data = handle.readDataToEndOfFile()
      done.signal()
    }
  }
  /// Everything read, once the writer closed the pipe.
  public func text() -> String {
    done.wait()
    return String(decoding: data, as: UTF8.self)
  }
}

/// The repository root.
public let repositoryRoot: String = {
  var url = URL(fileURLWithPath: #filePath)
  for _ in 0..<3 { url.deleteLastPathComponent() }
  return url.path
}()

/// The built `swiftcompress` executable next to the test bundle (override with
/// SWIFTCOMPRESS_BIN).
public let swiftcompressExecutable: String = {
  if let path = ProcessInfo.processInfo.environment["SWIFTCOMPRESS_BIN"] { return path }
  let candidates = [
    Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("swiftcompress").path,
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("swiftcompress")
      .path,
    repositoryRoot + "/.build/debug/swiftcompress",
  ]
  return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[2]
}()
