import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Decompress: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "decompress",
      abstract: "Dequantize a compressed-tensors checkpoint (any format quantize writes) back to dense weights.")

    @Argument(help: "The quantized checkpoint folder (with config.json's quantization_config).")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "The dtype of the dense weights (default: the config's torch_dtype).")
    var dtype: DType?

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    func run() throws {
      try Diagnostics.reportingErrors {
        let pass = try DecompressPass(configuration: .init(dtype: dtype))
        let options = try self.options.compression(
          input: input, output: output, command: "decompress", pass: pass, gates: gates)
        try runPipeline(pass: pass, options: options, shared: self.options.output)
      }
    }
  }
}
