import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "run",
      abstract: "Run a recipe: prune, factorize and quantize stages chained on each tensor.",
      discussion: """
        A recipe is YAML (docs/recipes.md): an ordered list of stages, each with targets (regular \
        expressions or the shorthands Linear and Embedding), exclude, its pass's options and per-tensor \
        overrides (later overrides win), and optional gates (max_error, min_sqnr, max_bpw, min_ratio). \
        A stage takes what the previous one produced: prune then quantize keeps the zeros, factorize \
        then quantize stores quantized factors, quantize with residual_rank adds a low-rank correction \
        (LQ-LoRA). The effective recipe is written into the output folder as swiftcompress-recipe.yaml; \
        every single-pass command writes its one-stage recipe there too. Gates given on the command \
        line replace the recipe's.
        """)

    @Argument(help: "The recipe (YAML).")
    var recipe: String

    @Argument(help: "The input checkpoint: a .safetensors file or a folder.")
    var input: String

    @Argument(help: "The output folder (must not exist unless --force).")
    var output: String

    @OptionGroup var options: OutputOptions

    @OptionGroup(title: "Quality gates") var gates: GateOptions

    func run() throws {
      try Diagnostics.reportingErrors {
        var recipe = try Recipe.load(self.recipe)
        recipe.gates = recipe.gates.overridden(by: gates.gates)
        try recipe.gates.validate()
        let pass = try RecipePass(configuration: recipe)
        try gates.requireMeasurable(by: pass, command: "run")
        var compression = CompressionOptions(
          input: input, output: output, selection: try TensorSelection(), maxShardSize: options.maxShardSize.bytes,
          force: options.force, command: "run", gates: recipe.gates, recipe: pass.effectiveRecipe)
        compression.split = try options.split()
        compression.strict = options.strict
        compression.jobs = options.jobs
        // The evaluate: block's data is read and checked before anything is written.
        let evaluation = options.dryRun || options.explain || compression.split != nil ? nil : recipe.evaluate
        let source = evaluation.map { DataSource(data: $0.data, tokens: $0.tokens, sampling: $0.sampling) }
        let loaded = try source?.load(model: input)
        // ... and so are its gates' model kind and the ids, from the input's config files.
        var samples: EvaluationSamples?
        if let evaluation, let source, let loaded {
          let kind = ForwardModels.configFacts(input)?.kind
          try evaluation.gates.validate(for: kind)
          samples = try source.samples(loaded, models: [input])
          try samples?.requireScoredPositions(for: kind)
        }
        var gateFailed = false
        // With --json, the run's report is printed once the evaluation is added to it.
        var runJSON: String?
        do {
          try runPipeline(
            pass: pass, options: compression, shared: options,
            jsonSink: samples == nil ? nil : { runJSON = $0 })
        } catch let exit as ExitCode where exit.rawValue == ExitStatus.gateFailed && evaluation != nil {
          gateFailed = true
        }
        if let evaluation, let samples {
          var result: EvaluationReport?
          defer {
            if let runJSON { printResult(Self.json(runJSON, adding: result)) }
          }
          result = try Parallel.withJobs(options.jobs) { try evaluateOutput(evaluation, samples: samples) }
          gateFailed = !(result?.passed ?? true) || gateFailed
        } else if recipe.evaluate != nil && compression.split != nil {
          Diagnostics.note("the recipe's evaluate: block is skipped in a split run; evaluate the merged output")
        }
        if gateFailed { throw ExitCode(ExitStatus.gateFailed) }
      }
    }

    /// The recipe's `evaluate:` block: input against output, each failed gate named on standard
    /// error. The summary goes to standard output (not with --json, which adds the report to the
    /// run's under `evaluation`, or --quiet).
    /// The run's JSON report with the evaluation's under `evaluation` (unchanged without one).
    static func json(_ run: String, adding evaluation: EvaluationReport?) -> String {
      guard let evaluation, let end = run.lastIndex(of: "}") else { return run }
      let nested = Format.json(evaluation).trimmingCharacters(in: .whitespacesAndNewlines)
        .replacingOccurrences(of: "\n", with: "\n  ")
      var head = String(run[..<end])
      while head.last?.isWhitespace ?? false { head.removeLast() }
      return head + (head.hasSuffix("{") ? "" : ",") + "\n  \"evaluation\" : " + nested + "\n}\n"
    }

    func evaluateOutput(_ evaluation: RecipeEvaluation, samples: EvaluationSamples) throws -> EvaluationReport {
      let reference = try openModel(input)
      let candidate = try openModel(output)
      try Evaluator.checkCompatible(reference: reference, candidate: candidate, paths: (input, output))
      try evaluation.gates.validate(for: reference.kind)
      try samples.check(vocabularySize: reference.vocabularySize)
      let progress = ForwardProgressLine(runsPerBatch: 2)
      let result = try Evaluator.evaluate(
        reference: reference, candidate: candidate, paths: (input, output), samples: samples,
        batchTokens: evaluation.batchTokens ?? Evaluator.defaultBatchTokens, gates: evaluation.gates,
        progress: options.quiet ? nil : progress.callback)
      progress.finish()
      if !options.json && !options.quiet { printResult("\n" + EvaluationReporter.text(result)) }
      let failed = result.gates.filter { !$0.passed }
      for gate in failed { Diagnostics.error("quality gate failed: \(gate.summary)") }
      return result
    }
  }
}
