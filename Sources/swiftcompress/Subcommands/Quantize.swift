import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension ScaleSearch: ExpressibleByArgument {}

extension QuantizationScheme: ExpressibleByArgument {
  /// A preset name, case-insensitively (MXFP4 and NVFP4 for the A16 presets); an
  /// unknown name is a usage error listing the known ones.
  public init?(argument: String) {
    self.init(name: argument)
  }
}

extension SwiftCompressCommand {
  struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Quantize linear weights into the compressed-tensors layout that vLLM and transformers load.",
      discussion: """
        Schemes (llm-compressor's preset names): \(QuantizationScheme.allCases.map(\.rawValue).joined(separator: ", ")). \
        Linear weights (2-D .weight tensors, not embeddings) are quantized in groups of --group-size \
        consecutive inputs; modules in --ignore (default: lm_head) are kept and listed in config.json's \
        quantization_config. The output matches llm-compressor 0.14 model_free_ptq with compressed-tensors \
        0.20 byte for byte.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(
      name: .long,
      help: ArgumentHelp(
        "The quantization scheme (MXFP4 and NVFP4 name the A16 ones).", valueName: "scheme"))
    var scheme: QuantizationScheme

    @Option(
      name: .long, parsing: .unconditional,
      help: ArgumentHelp(
        "Inputs per quantization group of the integer schemes (W8A16, W4A16, W4A16_ASYM); 0 for one scale per output channel. (default: \(QuantizePass.Configuration.defaultGroupSize))"
      ))
    var groupSize: Int?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "none: scales from each group's maximum, as the reference; mse: per group, the scale with the least squared error, in the same format (the report also shows round-to-nearest's error).",
        valueName: "none|mse"))
    var scaleSearch: ScaleSearch = QuantizePass.Configuration.defaultScaleSearch

    @Option(
      name: .long,
      help: ArgumentHelp(
        "Rotate the model first (as 'swiftcompress rotate --seed SEED', default seed 0; Llama, Mistral, Qwen2, Qwen3): a rotated copy is written beside the output and removed after the run (also with --dry-run and --explain). See docs/rotation.md.",
        valueName: "hadamard[:SEED]"))
    var rotate: RotationChoice?

    @OptionGroup var ignoring: IgnoreOptions

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    func validate() throws {
      guard let groupSize else { return }
      if let grouping = scheme.fixedGrouping {
        throw ValidationError(
          "--group-size does not apply to \(scheme.rawValue), which always uses \(grouping); leave it out (it applies to the integer schemes W8A16, W4A16 and W4A16_ASYM)."
        )
      }
      let multiple = IntegerPackCodec.groupMultiple(bits: scheme.bits)  // groups fill whole 32-bit words
      guard groupSize >= 0, groupSize % multiple == 0 else {
        throw ValidationError(
          "--group-size must be 0 (one scale per output channel) or a positive multiple of \(multiple) for \(scheme.rawValue), not \(groupSize)."
        )
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        var configuration = QuantizePass.Configuration(scheme: scheme, scaleSearch: scaleSearch)
        if let groupSize { configuration.groupSize = groupSize }
        if let modules = ignoring.modules { configuration.ignore = modules }
        let pass = try QuantizePass(configuration: configuration)
        let options = try self.options.compression(
          input: input, output: output, command: "quantize", pass: pass, gates: gates)
        guard let rotate else {
          try runPipeline(pass: pass, options: options, shared: self.options.output)
          return
        }
        try withRotatedInput(rotate, options: options) { rotated in
          try runPipeline(pass: pass, options: rotated, shared: self.options.output)
        }
      }
    }
  }
}
