import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension FactorizationMethod: ExpressibleByArgument {}

extension SwiftCompressCommand {
  struct Factorize: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "factorize",
      abstract: "Replace linear weights W (out x in) by two factors A (out x k) and B (k x in).",
      discussion: """
        Methods: svd (truncated SVD, the optimum), rsvd (randomized SVD, seeded), lq (column-pivoted QR of \
        W^T: cheaper, not optimal), svd-llm (SVD of W·S, S the Cholesky factor of the inputs' XᵀX, layer by \
        layer from --data/--tokens), asvd (SVD of W·diag(mean|x|^0.5), likewise). Give exactly one rank rule: --rank, --energy, --max-error or --ratio. \
        A weight whose factors would not be smaller than the matrix stays dense. Each factorized \
        <module>.weight becomes <module>.weight_a and <module>.weight_b in the weight's dtype, and \
        config.json records the ranks; decompress multiplies them out.
        """)

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @Option(name: .long, help: "svd | rsvd | lq | svd-llm | asvd.")
    var method: FactorizationMethod = FactorizePass.Configuration.defaultMethod

    @Option(name: .long, parsing: .unconditional, help: "A fixed rank k.")
    var rank: Int?

    @Option(
      name: .long, parsing: .unconditional,
      help: "The smallest rank keeping this fraction of the squared singular values, in (0, 1].")
    var energy: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "The smallest rank with at most this relative Frobenius error, in (0, 1].")
    var maxError: Double?

    @Option(name: .long, parsing: .unconditional, help: "Keep this fraction of each weight's parameters, in (0, 1].")
    var ratio: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "One budget of factor parameters for the whole selection, allocated to minimise the total error.")
    var budget: Int?

    @Option(
      name: .long, parsing: .unconditional,
      help: "The same budget as a fraction of the selected weights' parameters, in (0, 1].")
    var modelRatio: Double?

    @Option(
      name: .long,
      help: ArgumentHelp(
        "Activation-aware: factorize W diag(s) with s the per-input-channel activation norms of this file (the format prune --method wanda reads), then fold 1/s into B.",
        valueName: "file"))
    var calibration: String?

    @Option(
      name: .long, parsing: .unconditional,
      help: "rsvd: extra random columns. (default: \(FactorizePass.defaultOversampling))")
    var oversampling: Int?

    @Option(
      name: .long, parsing: .unconditional,
      help: "rsvd: power iterations. (default: \(FactorizePass.defaultPowerIterations))")
    var powerIterations: Int?

    /// --seed: rsvd's seed (shared with the calibration data's draw).
    var seed: UInt64? { calibrationData.seed }

    @OptionGroup(title: "Calibration data (--method svd-llm or asvd)") var calibrationData: DataOptions

    @OptionGroup var calibrationRun: CalibrationRunOptions

    @OptionGroup var ignoring: IgnoreOptions

    @OptionGroup var options: PipelineOptions

    @OptionGroup(title: "Quality gates") var gates: FactorizeGateOptions

    /// rsvd's options are refused with the other methods rather than ignored.
    func validate() throws {
      let rsvd: [(String, Bool)] = [
        ("--oversampling", oversampling != nil), ("--power-iterations", powerIterations != nil),
        ("--seed", seed != nil),
      ]
      for (option, given) in rsvd where given && method != .rsvd && !(option == "--seed" && calibrationData.isGiven) {
        throw ValidationError(
          "\(option) does not apply to --method \(method.rawValue), which is not random; it is for --method rsvd.")
      }
      if method.isCalibrated {
        if !calibrationData.isGiven {
          throw ValidationError(
            "--method \(method.rawValue) needs calibration data: --data FILE (text) or --tokens FILE (token ids).")
        }
        if calibration != nil {
          throw ValidationError(
            "--calibration is the statistics-file form of activation-aware factorization; --method \(method.rawValue) gathers its own from --data/--tokens."
          )
        }
      } else if calibrationData.isGiven {
        throw ValidationError("--data and --tokens are calibration data for --method svd-llm and asvd.")
      }
      for (option, value) in [("--oversampling", oversampling), ("--power-iterations", powerIterations)] {
        if let value, value < 0 { throw ValidationError("\(option) must be at least 0, not \(value).") }
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        let rules: [RankRule] = [
          rank.map(RankRule.rank), energy.map(RankRule.energy), maxError.map(RankRule.maxError),
          ratio.map(RankRule.ratio), budget.map(RankRule.budget), modelRatio.map(RankRule.modelRatio),
        ].compactMap { $0 }
        guard rules.count == 1 else {
          throw SwiftCompressError.invalidOption(
            option: "--rank",
            reason: "give exactly one of --rank, --energy, --max-error, --ratio, --budget and --model-ratio")
        }
        var configuration = FactorizePass.Configuration(
          method: method, rank: rules[0], calibration: calibration)
        if let modules = ignoring.modules { configuration.ignore = modules }
        if let oversampling { configuration.oversampling = oversampling }
        if let powerIterations { configuration.powerIterations = powerIterations }
        if let seed { configuration.seed = seed }
        var pass = try FactorizePass(configuration: configuration)
        let shared = self.options.output
        pass.calibrationPending = method.isCalibrated
        if method.isCalibrated && !shared.dryRun && !shared.explain {
          let prepared = try pass.prepared(for: try Checkpoint.open(input))
          pass.calibrated = try runCalibration(
            FactorizeMethod(pass: prepared), input: input, data: calibrationData, run: calibrationRun,
            jobs: shared.jobs)
        }
        var options = try self.options.compression(
          input: input, output: output, command: "factorize", pass: pass, gates: gates)
        if let note = pass.calibrated?.note { options.notes.append(note) }
        try runPipeline(pass: pass, options: options, shared: self.options.output)
      }
    }
  }
}
