import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `--rotate hadamard[:SEED]`: rotate the input (`swiftcompress rotate`, seed 0 by default)
/// before compressing it; `--rotate block-hadamard:BLOCK`: the online block-wise rotation
/// written as `transform_config` (`OnlineRotation`, no copy).
struct RotationChoice: ExpressibleByArgument {
  /// The offline rotation's seed (`hadamard`).
  var seed: UInt64 = 0
  /// The online rotation's block (`block-hadamard`), nil for the offline one.
  var block: Int?

  init?(argument: String) {
    let parts = argument.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
    switch parts.first?.lowercased() {
    case "hadamard":
      if parts.count == 2 {
        guard let seed = UInt64(parts[1]) else { return nil }
        self.seed = seed
      }
    case "block-hadamard":
      guard parts.count == 2, let block = Int(parts[1]) else { return nil }
      self.block = block
    default:
      return nil
    }
  }

  static var defaultValueDescription: String { "hadamard[:SEED]|block-hadamard:BLOCK" }
}

/// Runs `body` on a rotated copy of `input` (RotatePass with `seed`), then removes the copy.
///
/// The copy is a complete `rotate` output written beside `output` as
/// `.<output name>.rotated-<pid>` (the same file system, so that a large model is not copied
/// into a small /tmp); it is registered with `OutputCleanup` so that an interruption removes it
/// with the unfinished output, and removed when `body` returns or throws. `options` are
/// `body`'s: their input becomes the copy, the report still names `input`, and a note says
/// what was rotated.
func withRotatedInput(
  _ choice: RotationChoice, options: CompressionOptions, _ body: (CompressionOptions) throws -> Void
) throws {
  let destination = URL(fileURLWithPath: options.output).standardized
  let copy =
    destination.deletingLastPathComponent().path + "/." + destination.lastPathComponent
    + ".rotated-\(getpid())"
  OutputCleanup.register(copy, destination: options.output)
  defer {
    try? FileManager.default.removeItem(atPath: copy)
    OutputCleanup.unregister(copy)
  }
  var rotation = CompressionOptions(
    input: options.input, output: copy, selection: try TensorSelection(), force: true, command: "rotate")
  rotation.jobs = options.jobs
  _ = try Compressor.run(pass: try RotatePass(configuration: .init(seed: choice.seed)), options: rotation)
  var rotated = options
  rotated.namedInput = options.input
  rotated.input = copy
  rotated.notes.append(
    "the input was rotated first (swiftcompress rotate --seed \(choice.seed): norms folded, residual stream and value heads rotated, a tied head untied; docs/rotation.md); the weights' metadata records it"
  )
  try body(rotated)
}
