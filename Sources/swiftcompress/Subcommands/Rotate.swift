import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Rotate: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "rotate",
      abstract: "Fuse seeded Hadamard rotations into a Llama-family model (QuaRot): the same function, fewer outliers.",
      discussion: """
        Supports \(RotatePass.architectures.joined(separator: ", ")). Every RMSNorm's scale is folded into the \
        linears that read it (the norms become ones), the residual stream is rotated by a seeded randomised \
        Hadamard matrix Q (embedding E Q, readers W Q, writers Q^T W) and every value head by a second one \
        (v_proj rows, o_proj columns); a tied head is untied. The output is a dense checkpoint in the input's \
        dtype that computes the same logits up to float rounding; quantize it afterwards. See docs/rotation.md.
        """)

    @Argument(help: "The input checkpoint folder (dense, with config.json).")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "The seed of the rotations (the same seed gives the same output).")
    var seed: UInt64 = 0

    @OptionGroup var options: OutputOptions

    func run() throws {
      try Diagnostics.reportingErrors {
        let pass = try RotatePass(configuration: .init(seed: seed))
        var compression = CompressionOptions(
          input: input, output: output, selection: try TensorSelection(), maxShardSize: options.maxShardSize.bytes,
          force: options.force, command: "rotate")
        compression.split = try options.split()
        compression.strict = options.strict
        compression.jobs = options.jobs
        try runPipeline(pass: pass, options: compression, shared: options)
      }
    }
  }
}
