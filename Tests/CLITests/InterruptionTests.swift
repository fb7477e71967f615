import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A process id that no process has: a child that has exited and been waited for.
func deadProcessID() throws -> Int32 {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/bin/true")
  try process.run()
  process.waitUntilExit()
  return process.processIdentifier
}

/// Writes `count` F32 linear weights of 1024 x 4096 (16 MiB each), all finite.
func writeLargeModel(_ path: String, count: Int) throws {
  let rows = 1024
  let columns = 4096
  let row = (0..<columns).map { Float(($0 * 7919) % 2001) / 1000 - 1 }
  let tensor = [[Float]](repeating: row, count: rows).flatMap { $0 }
  let names = (0..<count).map { "model.layers.\($0).mlp.up_proj.weight" }
  let writer = try SafeTensorsWriter(
    destination: path, tensors: names.map { PlannedTensor(name: $0, dtype: .f32, shape: [rows, columns]) })
  for name in names {
    try tensor.withUnsafeBytes { try writer.write(name, $0) }
  }
  try writer.finish()
}

@Suite("Interrupted runs and write failures", .serialized)
struct InterruptionTests {
  /// Runs `quantize` on a model big enough to take a while, and signals it at several
  /// moments: the destination never exists half-written; SIGINT and SIGTERM exit 130
  /// and 143 after removing the staging folder; SIGKILL may leave a staging folder,
  /// which the next run beside it removes.
  @Test func signalsLeaveNoHalfWrittenOutput() throws {
    let folder = TemporaryFolder()
    let model = folder.file("model")
    try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: false)
    try writeLargeModel(model + "/model.safetensors", count: 6)
    _ = FileManager.default.createFile(atPath: model + "/config.json", contents: Data("{}\n".utf8))
    let work = folder.file("work")
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false)
    let arguments = ["quantize", model, "", "--scheme", "W8A16", "--quiet"]

    func start(_ out: String) throws -> Process {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: swiftcompressExecutable)
      var args = arguments
      args[2] = out
      process.arguments = args
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      return process
    }

    // The uninterrupted run: how long it takes, and a complete output.
    let clock = ContinuousClock()
    let began = clock.now
    let full = try start(work + "/full")
    full.waitUntilExit()
    let duration = clock.now - began
    #expect(full.terminationStatus == 0)
    #expect(try runProcess(swiftcompressExecutable, ["verify", work + "/full"]).status == 0)
    try FileManager.default.removeItem(atPath: work + "/full")

    var interruptedWithCleanup = 0
    var killedMidway = false
    for (signal, expected) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143)), (SIGKILL, Int32(-1))] {
      for delay in [Duration.milliseconds(50), .milliseconds(300), duration / 2] {
        let out = work + "/out"
        let process = try start(out)
        Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        let label = "signal \(signal) after \(delay)"
        let status = process.terminationStatus
        let signalled = process.terminationReason == .uncaughtSignal
        if signal == SIGKILL {
          #expect((signalled && status == SIGKILL) || status == 0, "\(label): \(status)")
          if signalled && delay > .milliseconds(50) { killedMidway = true }
        } else {
          // 128 + signal after cleaning up; 0 when it finished first; killed by the
          // signal itself only when it arrived before main() installed the handling.
          #expect(status == expected || status == 0 || (signalled && status == signal), "\(label): \(status)")
          if status == expected { interruptedWithCleanup += 1 }
          #expect(stagingFolders(work).isEmpty, "\(label): left \(stagingFolders(work))")
        }
        // The destination does not exist, or it is complete.
        if FileManager.default.fileExists(atPath: out) {
          let verify = try runProcess(swiftcompressExecutable, ["verify", out])
          #expect(verify.status == 0, "\(label): \(verify.stdout)")
          #expect(FileManager.default.fileExists(atPath: out + "/" + Report.jsonFileName), "\(label)")
          try FileManager.default.removeItem(atPath: out)
        }
        if signal == SIGKILL && !stagingFolders(work).isEmpty {
          // A run beside the leftovers removes them: their process is gone.
          let next = try runProcess(
            swiftcompressExecutable, ["convert", fixture("tiny-llama-f32"), work + "/next", "-q"])
          #expect(next.status == 0, "\(next.stderr)")
          #expect(stagingFolders(work).isEmpty, "\(label): stale \(stagingFolders(work))")
          try FileManager.default.removeItem(atPath: work + "/next")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty, "\(label)")
      }
    }
    // At least the mid-way SIGINT and SIGTERM interrupted a run and cleaned up.
    #expect(interruptedWithCleanup >= 2, "the runs finished before the signals: \(duration)")
    #expect(killedMidway, "no SIGKILL interrupted a run: \(duration)")
  }

  /// Staging folders of processes that no longer run are removed by the next run
  /// beside them; those of running processes are kept; a destination moved aside by
  /// --force whose replacement never arrived is moved back.
  @Test func staleStagingFoldersAreRemovedByTheNextRun() throws {
    let folder = TemporaryFolder()
    let dead = try deadProcessID()
    let live = getpid()  // this test process, which runs
    let stale = [".out.partial-\(dead)-12345", ".other.partial-\(dead)-1", ".model.safetensors.partial-\(dead)-7"]
    for name in stale.prefix(2) {
      try FileManager.default.createDirectory(atPath: folder.file(name + "/sub"), withIntermediateDirectories: true)
      _ = FileManager.default.createFile(atPath: folder.file(name + "/sub/model.safetensors"), contents: Data([1, 2]))
    }
    _ = FileManager.default.createFile(atPath: folder.file(stale[2]), contents: Data([1]))
    let running = ".busy.partial-\(live)-99"
    try FileManager.default.createDirectory(atPath: folder.file(running), withIntermediateDirectories: false)
    let unrelated = [".partial-notes", ".x.partial-abc-1", "keep.partial-\(dead)-3"]
    for name in unrelated { _ = FileManager.default.createFile(atPath: folder.file(name), contents: Data()) }
    // --force moved "previous" aside, then the process died before the new one arrived.
    try FileManager.default.createDirectory(
      atPath: folder.file(".previous.partial-\(dead)-5.old"), withIntermediateDirectories: false)
    _ = FileManager.default.createFile(atPath: folder.file(".previous.partial-\(dead)-5.old/a"), contents: Data())
    // ... and here it died after the new one arrived: the old one is garbage.
    try FileManager.default.createDirectory(atPath: folder.file("done"), withIntermediateDirectories: false)
    try FileManager.default.createDirectory(
      atPath: folder.file(".done.partial-\(dead)-6.old"), withIntermediateDirectories: false)

    let result = try runProcess(
      swiftcompressExecutable, ["convert", fixture("tiny-llama-f32"), folder.file("new"), "-q"])
    #expect(result.status == 0, "\(result.stderr)")
    let left = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
    #expect(left == Set([running, "new", "previous", "done"] + unrelated), "\(left.sorted())")
    #expect(FileManager.default.fileExists(atPath: folder.file("previous/a")))
  }

  /// The output may not be the input, lie inside it or contain it (even with --force),
  /// nor replace an existing output without --force: exit 73, the input untouched.
  @Test func refusalsExit73AndTouchNothing() throws {
    let folder = TemporaryFolder()
    let model = folder.file("model")
    try FileManager.default.copyItem(atPath: fixture("tiny-llama-f32"), toPath: model)
    let file = model + "/model.safetensors"
    try FileManager.default.createSymbolicLink(atPath: folder.file("link"), withDestinationPath: model)
    try FileManager.default.createDirectory(atPath: folder.file("existing"), withIntermediateDirectories: false)
    _ = FileManager.default.createFile(atPath: folder.file("existing/keep.txt"), contents: Data("mine".utf8))
    let before = treeListing(folder.path)
    let cases: [(String, [String], String)] = [
      ("into the input folder", [model, model + "/out"], "refusing to write there"),
      ("over the input folder", [model, model], "refusing to write there"),
      ("over the input folder, --force", [model, model, "--force"], "refusing to write there"),
      ("over the input file, --force", [file, file, "--force"], "refusing to write there"),
      ("over the input's folder from its file, --force", [file, model, "--force"], "refusing to write there"),
      ("over a folder containing the input, --force", [model, folder.path, "--force"], "refusing to write there"),
      ("through a link to the input, --force", [model, folder.file("link"), "--force"], "refusing to write there"),
      ("over an existing output", [model, folder.file("existing")], "pass --force to replace it"),
      ("into a missing folder", [model, folder.file("missing/out")], "does not exist"),
    ]
    for (label, arguments, message) in cases {
      for command in [["convert"], ["quantize", "--scheme", "W8A16"]] {
        let result = try runProcess(swiftcompressExecutable, [command[0]] + arguments + command.dropFirst())
        #expect(result.status == 73, "\(label): \(result.stderr)")
        #expect(result.stderr.contains(message), "\(label): \(result.stderr)")
        #expect(treeListing(folder.path) == before, "\(label)")
      }
    }
    #expect(FileManager.default.contentsEqual(atPath: file, andPath: fixture("tiny-llama-f32/model.safetensors")))
    #expect(try String(contentsOfFile: folder.file("existing/keep.txt"), encoding: .utf8) == "mine")
  }

  /// A folder the user may not write into: exit 73 naming it, nothing left. Root
  /// ignores permissions, so the test only runs as another user.
  @Test(.enabled(if: geteuid() != 0, "root ignores file permissions"))
  func readOnlyDestinationFolderExits73() throws {
    let folder = TemporaryFolder()
    let parent = folder.file("readonly")
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
    chmod(parent, 0o555)
    defer { chmod(parent, 0o755) }
    let result = try runProcess(swiftcompressExecutable, ["convert", fixture("tiny-llama-f32"), parent + "/out"])
    #expect(result.status == 73, "\(result.stderr)")
    #expect(result.stderr.contains(parent + "/out: cannot create output"), "\(result.stderr)")
    #expect(result.stderr.contains("ermission denied"), "\(result.stderr)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: parent).isEmpty)
  }

  /// A full disk, simulated with a file-size limit (ulimit -f, in 512-byte blocks for
  /// sh): the write fails with EFBIG (SIGXFSZ is ignored), the error names the file and
  /// the reason, exit 73, and neither the destination nor a staging folder is left.
  @Test func fileSizeLimitIsAClearWriteErrorWithNothingLeft() throws {
    let folder = TemporaryFolder()
    let out = folder.file("out")
    for (command, size) in [
      ("convert '\(fixture("tiny-llama-f32"))' '\(out)'", "200"),
      ("convert '\(fixture("tiny-llama-f32"))' '\(out)' --dtype bf16", "200"),
      ("quantize '\(fixture("tiny-llama-f32"))' '\(out)' --scheme W8A16", "200"),
      ("convert '\(fixture("tiny-llama-sharded"))' '\(out)' --max-shard-size 300KB", "1"),
    ] {
      // Run as a child of the shell, not exec'd: a disposition inherited from the test
      // runner must not hide a missing SIG_IGN.
      let result = try runProcess(
        "/bin/sh", ["-c", "ulimit -f \(size); '\(swiftcompressExecutable)' \(command); exit $?"])
      #expect(result.status == 73, "\(command): \(result.stderr)")
      #expect(result.stderr.contains(out + "/"), "\(command): \(result.stderr)")
      #expect(result.stderr.contains("cannot create output: File too large"), "\(command): \(result.stderr)")
      #expect(result.stderr.contains("ulimit -f"), "\(command): \(result.stderr)")
      #expect(!result.stderr.contains(".partial-"), "\(command): \(result.stderr)")
      #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty, "\(command)")
    }
  }

  /// The run's last outputs are written while the report is rendered: when that write
  /// fails, the run fails as any write does, after the report files were written into
  /// the staging folder, and leaves nothing. Here the limit (8 KiB) lets every report
  /// file through but not the last tensor's 8 KiB of codes.
  @Test func aFailedLastWriteBesideTheReportLeavesNothing() throws {
    let folder = TemporaryFolder()
    let input = folder.file("two.safetensors")
    let shapes = [("a.weight", 16), ("b.weight", 64)]
    let writer = try SafeTensorsWriter(
      destination: input, tensors: shapes.map { PlannedTensor(name: $0.0, dtype: .f32, shape: [$0.1, 128]) })
    for (name, rows) in shapes {
      let values = (0..<(rows * 128)).map { Float(($0 * 7919) % 2001) / 1000 - 1 }
      try values.withUnsafeBytes { try writer.write(name, $0) }
    }
    try writer.finish()
    let out = folder.file("out")
    for limit in ["16", "unlimited"] {
      let result = try runProcess(
        "/bin/sh",
        ["-c", "ulimit -f \(limit); '\(swiftcompressExecutable)' quantize '\(input)' '\(out)' --scheme W8A16; exit $?"])
      if limit == "unlimited" {
        // The same run without the limit succeeds; only its last tensor (b: 8-bit codes,
        // a scale per row, the shape) ends past the limit.
        #expect(result.status == 0, "\(result.stderr)")
        let size = try FileManager.default.attributesOfItem(atPath: out + "/model.safetensors")[.size] as? Int ?? 0
        let lastTensor = 64 * 128 + 64 * 4 + 16
        #expect(size > 16 * 512 && size - lastTensor < 16 * 512, "\(size) bytes")
        continue
      }
      #expect(result.status == 73, "\(result.stderr)")
      #expect(result.stderr.contains(out + "/model.safetensors"), "\(result.stderr)")
      #expect(result.stderr.contains("cannot create output: File too large"), "\(result.stderr)")
      #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["two.safetensors"])
    }
  }
}
