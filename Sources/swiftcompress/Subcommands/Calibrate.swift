import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "calibrate",
      abstract: "Gather the input statistics of every linear module on data, for wanda and factorize --calibration.",
      discussion: """
        For every linear module but lm_head, over all calibration tokens: the count \
        (<module>.input_count, I64 [1]), each input channel's sum of squares \
        (<module>.input_sum_squares, F32 [C]; Wanda's norm is its square root), mean absolute value \
        (<module>.input_mean_abs, F32 [C]) and with --hessians XᵀX (<module>.input_gram, F32 [C, C]). \
        Sums are accumulated in Double. The metadata names the model (path, architecture, a CRC-32 \
        fingerprint of its weight files), the tokens (count, samples, a hash of the ids) and the \
        settings. prune --method wanda and factorize --calibration read the sums of squares. See \
        docs/evaluation.md.

        Exit codes: 65 invalid data; 73 when -o exists (without --force), is a folder, or its folder \
        does not exist or cannot be written (checked before the model is opened).
        """)

    @Argument(help: "The model: a folder with config.json (and tokenizer.json for --data).")
    var model: String

    @OptionGroup(title: "Data") var data: DataOptions

    @Option(
      name: [.short, .customLong("output")], help: ArgumentHelp("The statistics file to write.", valueName: "file"))
    var output: String

    @Flag(
      name: .long,
      help:
        "Also gather each module's XᵀX (C x C values per module: large for large layers); for external use (quantize --method gptq, prune --method sparsegpt and factorize --method svd-llm gather their own, layer by layer)."
    )
    var hessians = false

    @Flag(name: .long, help: "Replace the output file if it exists.")
    var force = false

    @OptionGroup var batch: BatchOptions

    func validate() throws {
      try data.requireGiven()
      if !output.hasSuffix(".safetensors") {
        throw ValidationError("-o '\(output)': the statistics are a safetensors file; end its name in .safetensors.")
      }
    }

    func run() throws {
      try Diagnostics.reportingErrors {
        try Parallel.withJobs(batch.jobs) {
          var isDirectory: ObjCBool = false
          if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
            if isDirectory.boolValue {
              throw CheckpointError.cannotCreateOutput(path: output, reason: "-o: is a folder")
            }
            if !force { throw CheckpointError.outputExists(path: output) }
          }
          let loaded = try data.load(model: model)
          let samples = try data.samples(loaded, models: [model])
          try checkWritable(output, option: "-o")
          let forward = try openModel(model)
          try samples.check(vocabularySize: forward.vocabularySize)
          let checkpoint = try Checkpoint.open(model)
          let fingerprint = try ActivationStatistics.fingerprint(of: checkpoint)
          let statistics = ActivationStatistics(gram: hessians)
          let progress = ForwardProgressLine(runsPerBatch: 1)
          let callback = progress.callback
          var done = 0
          for range in evaluationBatches(samples.sequences, batchTokens: batch.batchTokens) {
            let tokens = TokenBatch(Array(samples.sequences[range]))
            statistics.onLayer = callback.map { callback in
              { [done, total = samples.info.tokens] layer, layers in
                callback(
                  EvaluationProgress(
                    model: "calibrate", layer: layer + 1, layers: layers, tokensDone: done,
                    batchTokens: tokens.tokenCount, tokenCount: total))
              }
            }
            _ = try forward.finalHiddenStates(tokens, observer: statistics)
            done += tokens.tokenCount
          }
          progress.finish()
          if statistics.modules.isEmpty {
            throw SwiftCompressError.invalidCheckpoint(
              path: model, reason: "the forward pass reported no linear module")
          }
          let info = samples.info
          var metadata: [String: String] = [
            "tool": "swiftcompress \(SwiftCompressVersion.current)",
            "model_path": model, "model_architecture": forward.architecture, "model_fingerprint": fingerprint,
            "tokens": "\(info.tokens)", "samples": "\(info.samples)", "token_hash": info.tokenHash,
            "data_file": info.file, "data_format": info.format.rawValue, "mode": info.mode, "seed": "\(info.seed)",
          ]
          if let seqLen = info.seqLen { metadata["seq_len"] = "\(seqLen)" }
          try statistics.write(to: output, metadata: metadata)
          printResult(
            "\(Format.count(statistics.modules.count, "module")) over \(Format.count(info.tokens, "token")) in \(Format.count(info.samples, "sample")) -> \(output)\n"
          )
        }
      }
    }
  }
}
