import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension PruneMethod: ExpressibleByArgument {}
extension PruneScope: ExpressibleByArgument {}
extension SparseFormat: ExpressibleByArgument {}
extension StructuredUnit: ExpressibleByArgument {}
extension UnitNorm: ExpressibleByArgument {}

extension NMPattern: ExpressibleByArgument {
  public init?(argument: String) {
    self.init(argument)
  }
}

extension SwiftCompressCommand {
  struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "prune",
      abstract: "Make weights sparse (unstructured, N:M) or remove whole neurons and heads.",
      discussion: """
        Methods: magnitude (lowest |w|), nm (N:M by magnitude), wanda (lowest |w_ij| x ||X_j||, from \
        --calibration statistics or gathered layer by layer from --data/--tokens), sparsegpt (SparseGPT layer by \
        layer from --data/--tokens: mask from w²/[H⁻¹]_jj, the error moved into the rest of the row), random (seeded baseline), structured (whole units by L1/L2 norm). \
        magnitude, wanda and random prune --sparsity of each tensor, each row or the whole selection \
        (--scope), or keep N of every M consecutive inputs (--pattern). Among equal scores the earlier \
        weight is pruned first. Output is dense with zeros, or with --sparse-format bitmask in \
        compressed-tensors' sparse-bitmask layout (sparse-24-bitmask for 2:4), which decompress restores.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "magnitude | nm | wanda | sparsegpt | random | structured.")
    var method: PruneMethod

    @Option(name: .long, parsing: .unconditional, help: "Fraction of weights to prune, in [0, 1).")
    var sparsity: Double?

    @Option(name: .long, help: "tensor | row | global (default: row for wanda, tensor otherwise).")
    var scope: PruneScope?

    @Option(
      name: .long, parsing: .unconditional,
      help: ArgumentHelp("Keep N of every M consecutive inputs (1 <= N < M <= 32).", valueName: "N:M"))
    var pattern: NMPattern?

    @Option(
      name: .long, help: ArgumentHelp("Activation statistics for wanda (see docs/algorithms.md).", valueName: "file"))
    var calibration: String?

    /// --seed: --method random's seed (shared with the calibration data's draw).
    var seed: UInt64? { calibrationData.seed }

    @Option(
      name: .long, parsing: .unconditional,
      help:
        "SparseGPT: λ = dampening x mean(diag H) added to H's diagonal (default: \(ErrorFeedback.defaultDampening), the reference's)."
    )
    var dampening: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "SparseGPT: columns per mask block and lazy batch update (default: \(ErrorFeedback.defaultBlockSize)).")
    var blockSize: Int?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "SparseGPT, and Wanda from --data/--tokens: none (default) keeps the method's own values (llm-compressor's); ls replaces the kept weights by the least-squares solution for the mask under H = XᵀX: lower error, but several times the method's time on large modules. See docs/calibration.md.",
        valueName: "ls|none"))
    var refit: Refit.Mode?

    @OptionGroup(title: "Calibration data (--method sparsegpt, or wanda without --calibration)")
    var calibrationData: DataOptions

    @OptionGroup var calibrationRun: CalibrationRunOptions

    @Option(
      name: .long,
      help:
        "dense (zeros in place) | bitmask (compressed-tensors sparse-bitmask). (default: \(PrunePass.Configuration.defaultSparseFormat.rawValue))"
    )
    var sparseFormat: SparseFormat?

    @Option(name: .long, help: "Structured pruning unit: mlp | heads | rows | columns.")
    var structure: StructuredUnit?

    @Option(
      name: .long, parsing: .unconditional, help: "Structured pruning: fraction of units removed per layer, in [0, 1).")
    var ratio: Double?

    @Option(
      name: .long,
      help: "Structured pruning: unit score, l1 | l2. (default: \(PrunePass.Configuration.defaultNorm.rawValue))")
    var norm: UnitNorm?

    @Flag(name: .long, help: "Structured pruning: cut the coupled tensors and update config.json (else zero in place).")
    var shrink = false

    @OptionGroup var ignoring: IgnoreOptions

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    /// Options the method does not use are refused rather than ignored. (Those the pass
    /// itself refuses, such as --shrink without structured, keep its message.)
    func validate() throws {
      let nm = pattern != nil || method == .nm
      func refuse(_ option: String, given: Bool, _ reason: String) throws {
        if given { throw ValidationError("\(option) does not apply to \(reason).") }
      }
      if method == .structured {
        try refuse(
          "--scope", given: scope != nil, "--method structured, which removes a --ratio of the units of each layer")
        try refuse(
          "--sparsity", given: sparsity != nil, "--method structured; give --ratio, the fraction of units removed")
      } else {
        let instead = "it is for --method structured"
        try refuse("--structure", given: structure != nil, "--method \(method.rawValue) (\(instead))")
        try refuse("--ratio", given: ratio != nil, "--method \(method.rawValue) (\(instead))")
        try refuse("--norm", given: norm != nil, "--method \(method.rawValue) (\(instead))")
        if nm {
          try refuse(
            "--scope", given: scope != nil,
            "N:M pruning (--pattern), which keeps N of every M consecutive inputs in every row")
        }
      }
      try refuse(
        "--seed", given: seed != nil && method != .random && !calibrationData.isGiven,
        "--method \(method.rawValue): only --method random and the draw of --samples are seeded")
      let calibrated = method == .sparsegpt || (method == .wanda && calibration == nil)
      if calibrated {
        if !calibrationData.isGiven {
          throw ValidationError(
            method == .sparsegpt
              ? "--method sparsegpt needs calibration data: --data FILE (text) or --tokens FILE (token ids)."
              : "--method wanda needs input norms: --data FILE or --tokens FILE (gathered in this run), or --calibration FILE (from 'swiftcompress calibrate')."
          )
        }
      } else if calibrationData.isGiven {
        throw ValidationError(
          "--data and --tokens are calibration data for --method sparsegpt and for wanda without --calibration.")
      }
      try refuse(
        "--scope", given: scope != nil && method == .sparsegpt,
        "--method sparsegpt, which prunes --sparsity of each block of columns (its paper's rule)")
      try refuse("--dampening", given: dampening != nil && method != .sparsegpt, "--method \(method.rawValue)")
      try refuse("--block-size", given: blockSize != nil && method != .sparsegpt, "--method \(method.rawValue)")
      try refuse(
        "--refit", given: refit != nil && !calibrated,
        method == .wanda ? "--method wanda with --calibration (give --data or --tokens)" : "--method \(method.rawValue)"
      )
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        var configuration = PrunePass.Configuration(
          method: method, sparsity: sparsity, scope: scope, pattern: pattern, calibration: calibration,
          structure: structure, ratio: ratio, shrink: shrink)
        if let modules = ignoring.modules { configuration.ignore = modules }
        if let seed { configuration.seed = seed }
        if let sparseFormat { configuration.sparseFormat = sparseFormat }
        if let norm { configuration.norm = norm }
        if let dampening { configuration.dampening = dampening }
        if let blockSize { configuration.blockSize = blockSize }
        if let refit { configuration.refit = refit }
        var pass = try PrunePass(configuration: configuration)
        let shared = self.options.output
        pass.calibrationPending = pass.needsCalibrationData
        if pass.needsCalibrationData && !shared.dryRun && !shared.explain {
          let prepared = try pass.prepared(for: try Checkpoint.open(input))
          let method: any CalibratedMethod =
            self.method == .sparsegpt ? SparseGPTMethod(pass: prepared) : WandaMethod(pass: prepared)
          pass.calibrated = try runCalibration(
            method, input: input, data: calibrationData, run: calibrationRun, jobs: shared.jobs)
        }
        var options = try self.options.compression(
          input: input, output: output, command: "prune", pass: pass, gates: gates)
        if let note = pass.calibrated?.note { options.notes.append(note) }
        try runPipeline(pass: pass, options: options, shared: self.options.output)
      }
    }
  }
}
