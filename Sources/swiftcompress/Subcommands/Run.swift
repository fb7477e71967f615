import ArgumentParser
import CheckpointIO
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
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
        try runPipeline(pass: pass, options: compression, shared: options)
      }
    }
  }
}
