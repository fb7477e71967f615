import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "convert",
      abstract: "Rewrite a checkpoint through the pipeline: reshard it, or convert float tensors to another dtype.",
      discussion: """
        Without --dtype every tensor is copied unchanged (an identity pass), which reshards \
        the checkpoint with --max-shard-size. With --dtype, selected floating-point tensors \
        are rounded to nearest even; by default 1-D tensors and embeddings are kept \
        (use --include to choose explicitly). The output folder gets the weights, an index \
        when sharded, every non-weight file of the input, and swiftcompress-report.{json,md}.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "Convert selected float tensors to this dtype.")
    var dtype: DType?

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    func validate() throws {
      if let dtype, !Float32Conversion.encodableDTypes.contains(dtype) {
        throw ValidationError(
          "--dtype \(dtype.rawValue) cannot be written by convert; choose one of F32, F16, BF16, F64.")
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        let pass: any CompressionPass =
          if let dtype { try CastPass(configuration: .init(dtype: dtype)) } else { IdentityPass() }
        let options = try self.options.compression(
          input: input, output: output, command: "convert", pass: pass, gates: gates)
        try runPipeline(pass: pass, options: options, shared: self.options.output)
      }
    }
  }
}
