import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "evaluate",
      abstract: "Compare a compressed model with its reference on data: KL divergence, perplexity, top-1, cosine.",
      discussion: """
        Both models run on the same tokens, layer by layer. Decoders: perplexity of each, KL(P_ref || \
        P_cand) per scored position (mean, percentiles, max) and the share of positions where both \
        argmax agree ("Same top p"), named as llama-perplexity --kl-divergence names them; every \
        position followed by a token in its sample is scored. Encoders: the cosine of each sample's \
        pooled sentence embeddings and the Spearman correlation of the pairwise similarities. See \
        docs/evaluation.md.

        Exit codes: 65 when the candidate's architecture or vocabulary differs from the reference's, \
        the data is invalid, or (decoders) no sample has 2 or more tokens to score; 73 when the \
        --report folder does not exist or cannot be written (checked before the models are opened); \
        3 when a gate fails (after the figures are printed and written).
        """)

    @Argument(help: "The reference model: a folder with config.json (and tokenizer.json for --data).")
    var reference: String

    @Argument(help: "The candidate model, e.g. a compressed copy of the reference.")
    var candidate: String

    @OptionGroup(title: "Data") var data: DataOptions

    @OptionGroup var batch: BatchOptions

    @Option(
      name: .long,
      help: ArgumentHelp("Also write the report here: .json, .md or .html picks the format.", valueName: "path"))
    var report: String?

    @Flag(name: .long, help: "Print the report as JSON on standard output instead of the summary.")
    var json = false

    @Option(name: .long, parsing: .unconditional, help: "Fail (exit 3) when the mean KL divergence is above this.")
    var maxKLD: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "Fail (exit 3) when the top-1 agreement (a share in [0, 1]) is below this.")
    var minTop1: Double?

    @Option(
      name: .long, parsing: .unconditional,
      help: "Fail (exit 3) when the mean embedding cosine (encoders) is below this.")
    var minCosine: Double?

    var gates: EvaluationGates { EvaluationGates(maxKLD: maxKLD, minTop1: minTop1, minCosine: minCosine) }

    func validate() throws {
      try data.requireGiven()
      if let report, EvaluationReporter.FileFormat(path: report) == nil {
        throw ValidationError("--report '\(report)': the extension picks the format: .json, .md or .html.")
      }
      do {
        try gates.validate()
      } catch {
        throw ValidationError(error.errorDescription ?? "\(error)")
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        try Parallel.withJobs(batch.jobs) {
          // Data, gates and outputs are checked from the config files before a model is opened.
          let loaded = try data.load(model: reference)
          let kind = ForwardModels.configFacts(reference)?.kind
          try gates.validate(for: kind)
          let samples = try data.samples(loaded, models: [reference, candidate])
          try samples.requireScoredPositions(for: kind)
          if let report { try checkWritable(report, option: "--report") }
          let referenceModel = try openModel(reference)
          let candidateModel = try openModel(candidate)
          try Evaluator.checkCompatible(
            reference: referenceModel, candidate: candidateModel, paths: (reference, candidate))
          try gates.validate(for: referenceModel.kind)
          try samples.check(vocabularySize: referenceModel.vocabularySize)
          let progress = ForwardProgressLine(runsPerBatch: 2)
          let result = try Evaluator.evaluate(
            reference: referenceModel, candidate: candidateModel, paths: (reference, candidate), samples: samples,
            batchTokens: batch.batchTokens, gates: gates, progress: progress.callback)
          progress.finish()
          printResult(json ? Format.json(result) : EvaluationReporter.text(result))
          if let report, let format = EvaluationReporter.FileFormat(path: report) {
            try writeAtomically(EvaluationReporter.render(result, as: format), to: report)
          }
          let failed = result.gates.filter { !$0.passed }
          if !failed.isEmpty {
            for gate in failed { Diagnostics.error("quality gate failed: \(gate.summary)") }
            throw ExitCode(ExitStatus.gateFailed)
          }
        }
      }
    }
  }
}
