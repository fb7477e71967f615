import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

extension ScaleSearch: ExpressibleByArgument {}
extension QuantizationMethod: ExpressibleByArgument {}
extension ErrorFeedback.Order: ExpressibleByArgument {}
extension Refit.Mode: ExpressibleByArgument {}

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
      commandName: "quantize",
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
        "The quantization scheme (MXFP4 and NVFP4 name the A16 ones); required unless --target-bpw or --target-size chooses the schemes.",
        valueName: "scheme"))
    var scheme: QuantizationScheme?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "Store the weights whose name (<module>.weight) the regular expression is found in as SCHEME: a scheme name, SCHEME:gN for an integer scheme's group size (W4A16:g32), or keep. Repeatable; later rules win. The output holds one compressed-tensors config group per scheme. See docs/mixed-precision.md.",
        valueName: "regex=scheme"))
    var schemeFor: [String] = []

    @Option(
      name: .long, parsing: .unconditional,
      help: ArgumentHelp(
        "Choose one of --candidates per linear module to minimise the estimated error with at most this many stored bits per weight (scales included) over the quantized modules.",
        valueName: "bits"))
    var targetBpw: Double?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "As --target-bpw, with the whole output's size at most SIZE (bytes, or with K/M/G or KiB/MiB/GiB).",
        valueName: "size"))
    var targetSize: String?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "The schemes --target-bpw/--target-size choose from, comma-separated (default: \(SchemeChoice.defaultCandidates.map(\.description).joined(separator: ","))).",
        valueName: "list"))
    var candidates: String?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "calibrate's statistics file: the allocation weighs each input channel's error by its second moment (the output error proxy) instead of the weight error alone.",
        valueName: "file"))
    var calibration: String?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "The measurements of 'swiftcompress analyze --json' on this input: the allocation uses them (their candidates and loss) instead of measuring again.",
        valueName: "file"))
    var sensitivity: String?

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
        "rtn: round to nearest on the grid; gptq: GPTQ layer by layer from calibration data (--data or --tokens), written in the same layout.",
        valueName: "rtn|gptq"))
    var method: QuantizationMethod = QuantizePass.Configuration.defaultMethod

    @Option(
      name: .long, parsing: .unconditional,
      help:
        "GPTQ: λ = dampening x mean(diag H) added to H's diagonal (default: \(QuantizePass.Configuration.defaultDampening), the reference's)."
    )
    var dampening: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "GPTQ: columns per lazy batch update (default: \(QuantizePass.Configuration.defaultBlockSize)).")
    var blockSize: Int?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "GPTQ: column order: static (by decreasing input second moment, the reference's default) or none (left to right).",
        valueName: "static|none"))
    var actorder: ErrorFeedback.Order?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "GPTQ: none (default) keeps GPTQ's own values (llm-compressor's); ls then refits the values on the grid, and integer scales, by least squares under the same H: lower error, but several times GPTQ's time on large modules. See docs/calibration.md.",
        valueName: "ls|none"))
    var refit: Refit.Mode?

    @OptionGroup(title: "Calibration data (--method gptq)") var data: DataOptions

    @OptionGroup var calibrationRun: CalibrationRunOptions

    @Option(
      name: .long,
      help: ArgumentHelp(
        "hadamard[:SEED]: rotate the model first (as 'swiftcompress rotate --seed SEED', default seed 0; Llama, Mistral, Qwen2, Qwen3): a rotated copy is written beside the output and removed after the run (also with --dry-run and --explain). block-hadamard:BLOCK (16, 32, 64 or 128): MR-GPTQ's online block-wise Hadamard rotation of every quantized module's input, fused into the weights and written as compressed-tensors' transform_config, which vLLM applies at run time (transformers does not: decompress for a dense model). See docs/rotation.md.",
        valueName: "hadamard[:SEED]|block-hadamard:BLOCK"))
    var rotate: RotationChoice?

    @OptionGroup var ignoring: IgnoreOptions

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    /// The scheme of the modules no rule or allocation names.
    var baseScheme: QuantizationScheme { scheme ?? .w4a16 }

    func validate() throws {
      let allocating = targetBpw != nil || targetSize != nil
      if targetBpw != nil && targetSize != nil {
        throw ValidationError("give --target-bpw or --target-size, not both.")
      }
      if scheme == nil && !allocating {
        throw ValidationError("--scheme is required (or let --target-bpw or --target-size choose the schemes).")
      }
      if !allocating && (candidates != nil || calibration != nil || sensitivity != nil) {
        throw ValidationError("--candidates, --calibration and --sensitivity are for --target-bpw or --target-size.")
      }
      if sensitivity != nil && (candidates != nil || calibration != nil || data.isGiven) {
        throw ValidationError(
          "--sensitivity holds the measurements and their candidates: leave out --candidates, --calibration, --data and --tokens."
        )
      }
      if allocating && !schemeFor.isEmpty {
        throw ValidationError(
          "--scheme-for cannot be combined with --target-bpw or --target-size: the allocation chooses every module's scheme (leave modules out with --ignore)."
        )
      }
      if allocating && (!options.include.isEmpty || !options.exclude.isEmpty) {
        throw ValidationError(
          "--target-bpw and --target-size allocate over every linear module not in --ignore: use --ignore instead of --include/--exclude."
        )
      }
      if let targetBpw, !(targetBpw > 0 && targetBpw.isFinite) {
        throw ValidationError("--target-bpw must be a positive number of bits, not \(targetBpw).")
      }
      if let targetSize, AllocationTarget.parseSize(targetSize) == nil {
        throw ValidationError(
          "--target-size '\(targetSize)': give a positive size in bytes, or with K, M, G (powers of 1000) or KiB, MiB, GiB."
        )
      }
      let scheme = baseScheme
      if let block = rotate?.block {
        guard OnlineRotation.blockSizes.contains(block) else {
          throw ValidationError(
            "--rotate block-hadamard:\(block): the block must be one of \(OnlineRotation.blockSizes.map(String.init).joined(separator: ", ")) (compressed-tensors' hadamard transform needs a power of two); choose one that divides every quantized module's input dimension."
          )
        }
        let group = QuantizePass.groupSize(
          of: scheme.codec(groupSize: groupSize ?? QuantizePass.Configuration.defaultGroupSize))
        if let mismatch = OnlineRotation.groupMismatch(block: block, groupSize: group) {
          throw ValidationError("--rotate block-hadamard:\(block): \(mismatch).")
        }
        if !options.include.isEmpty || !options.exclude.isEmpty {
          throw ValidationError(
            "--rotate block-hadamard rotates the input of every linear module not in --ignore, and transform_config names no others: --include and --exclude would leave rotated modules stored unrotated. Use --ignore MODULE to leave a module out."
          )
        }
      }
      if method == .rtn {
        if data.isGiven && !allocating {
          throw ValidationError(
            "--data and --tokens are calibration data for --method gptq (or, with --target-bpw/--target-size, the data the allocation measures the model's loss on); round-to-nearest needs none."
          )
        }
        if dampening != nil || blockSize != nil || actorder != nil || refit != nil {
          throw ValidationError("--dampening, --block-size, --actorder and --refit are GPTQ's: add --method gptq.")
        }
      } else {
        try data.requireGiven()
        if let dampening, !(dampening >= 0 && dampening.isFinite) {
          throw ValidationError("--dampening must be a finite number >= 0, not \(dampening).")
        }
        if let blockSize, blockSize < 1 { throw ValidationError("--block-size must be at least 1, not \(blockSize).") }
      }
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
        var configuration = QuantizePass.Configuration(scheme: baseScheme, scaleSearch: scaleSearch, method: method)
        if let groupSize { configuration.groupSize = groupSize }
        configuration.schemeFor = try schemeFor.map { (rule) throws(SwiftCompressError) in
          try SchemeRule(parsing: rule, defaultGroupSize: configuration.groupSize)
        }
        if let targetBpw { configuration.target = .bitsPerWeight(targetBpw) }
        if let size = targetSize.flatMap(AllocationTarget.parseSize) { configuration.target = .size(size) }
        if let candidates {
          configuration.candidates = try SchemeChoice.list(candidates, defaultGroupSize: configuration.groupSize)
        }
        configuration.statistics = calibration
        if let modules = ignoring.modules { configuration.ignore = modules }
        if let dampening { configuration.dampening = dampening }
        if let blockSize { configuration.blockSize = blockSize }
        if let actorder { configuration.actorder = actorder }
        configuration.rotationBlock = rotate?.block
        if let refit { configuration.refit = refit }
        var pass = try QuantizePass(configuration: configuration)
        pass.calibrationPending = method == .gptq
        let options = try self.options.compression(
          input: input, output: output, command: "quantize", pass: pass, gates: gates)
        guard let rotate, rotate.block == nil else {
          try quantize(pass, options)
          return
        }
        try withRotatedInput(rotate, options: options) { rotated in try quantize(pass, rotated) }
      }
    }

    /// Runs `pass` on `options.input`; GPTQ calibrates first on that model (the rotated copy
    /// when there is one).
    func quantize(_ pass: QuantizePass, _ options: CompressionOptions) throws {
      var pass = pass
      let shared = self.options.output
      if method == .gptq && !shared.dryRun && !shared.explain {
        let prepared = try pass.prepared(for: try Checkpoint.open(options.input))
        let method = GPTQMethod(pass: prepared)
        pass.calibrated = try runCalibration(
          method, input: options.input, data: data, run: calibrationRun, jobs: shared.jobs)
      }
      if let sensitivity {
        let bytes: Data
        do {
          bytes = try Data(contentsOf: URL(fileURLWithPath: sensitivity))
        } catch {
          throw CheckpointError.inputNotFound(path: sensitivity)
        }
        do {
          pass.allocate(with: try JSONDecoder().decode(Sensitivity.self, from: bytes))
        } catch {
          throw SwiftCompressError.invalidFile(
            path: sensitivity, reason: "is not the JSON of 'swiftcompress analyze --json' (\(error))")
        }
      }
      if pass.configuration.target != nil, method == .rtn, data.isGiven, !shared.dryRun, !shared.explain {
        // The allocation minimises the model's own loss, measured with one weight quantized at a time.
        let modelLoss = try measuredModelLoss(
          model: options.input, data: data, batchTokens: Evaluator.defaultBatchTokens)
        pass.allocate(
          with: try Sensitivity.measure(
            try Checkpoint.open(options.input), pass: pass, candidates: pass.configuration.candidates,
            statistics: nil, modelLoss: modelLoss))
      }
      var options = options
      if let note = pass.calibrated?.note { options.notes.append(note) }
      if pass.measuredSensitivity != nil, var recipe = options.recipe, !recipe.stages.isEmpty {
        // A recipe cannot redo these measurements: it holds their outcome.
        let spelled = try pass.spelledOut(for: try Checkpoint.open(options.input))
        recipe.stages[0].options = QuantizeStageConfiguration(quantize: spelled).recipeOptions
        options.recipe = recipe
        options.notes.append(
          "\(Recipe.fileName) spells the allocation out as one scheme_for rule per module: a recipe cannot redo the measurements of \(sensitivity == nil ? "--data/--tokens" : "--sensitivity")"
        )
      } else if pass.configuration.target != nil, method == .rtn, data.isGiven {
        options.notes.append(
          "a dry run or --explain allocates with the data-free estimate (squared weight error); the run measures the model's loss on the data instead, which can choose another mix"
        )
      }
      try runPipeline(pass: pass, options: options, shared: shared)
    }
  }
}
