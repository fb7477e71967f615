import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

/// The options of a calibrated method's run (`quantize --method gptq`, ...): how many tokens
/// each forward batch holds.
struct CalibrationRunOptions: ParsableArguments {
  @Option(
    name: .long, parsing: .unconditional,
    help: "Calibration: tokens per forward batch (bounds the activations of one layer run).")
  var calibrationBatchTokens: Int = 4096

  func validate() throws {
    if calibrationBatchTokens < 1 {
      throw ValidationError("--calibration-batch-tokens must be at least 1, not \(calibrationBatchTokens).")
    }
  }
}

/// Runs `method` layer by layer over the model at `input` on the samples of `data` and returns
/// the compressed modules' outputs. Progress on a terminal; the summary line (`note`) goes into the run's notes.
func runCalibration(
  _ method: any CalibratedMethod, input: String, data: DataOptions, run: CalibrationRunOptions, jobs: Int?
) throws -> CalibratedOutputs {
  try Parallel.withJobs(jobs) {
    let loaded = try data.load(model: input)
    let samples = try data.samples(loaded, models: [input])
    if let asked = data.samples, samples.sequences.count < asked {
      throw SwiftCompressError.invalidFile(
        path: data.data ?? data.tokens ?? "",
        reason:
          "gives \(Format.count(samples.sequences.count, "calibration sample")) where --samples asks for \(asked); give more data or fewer samples"
      )
    }
    let calibration = try LayerwiseCalibration(path: input, batchTokens: run.calibrationBatchTokens)
    try samples.check(vocabularySize: calibration.model.vocabularySize)
    for warning in samples.warnings { Diagnostics.warning(warning) }
    let progress = ForwardProgressLine(runsPerBatch: 2)
    if let callback = progress.callback {
      let tokens = samples.info.tokens
      calibration.onLayer = { layer, layers in
        callback(
          EvaluationProgress(
            model: method.name, layer: layer + 1, layers: layers, tokensDone: 0, batchTokens: tokens,
            tokenCount: tokens))
      }
    }
    let outputs = try CalibratedOutputs()
    let summary = try calibration.run(
      method, sequences: samples.sequences, tokenHash: samples.info.tokenHash, into: outputs)
    progress.finish()
    outputs.summary = summary
    let info = samples.info
    let note =
      "\(summary.method): \(Format.count(summary.modules, "module")) in \(Format.count(summary.layers, "layer")) calibrated on \(Format.count(summary.samples, "sample")) of \(info.file) (\(Format.count(summary.tokens, "token")), \(info.mode)\(info.seqLen.map { " to \($0)" } ?? ""), seed \(info.seed), tokens \(summary.tokenHash)) in \(String(format: "%.1f", summary.seconds)) s (forward passes \(String(format: "%.1f", summary.forwardSeconds)) s, statistics \(String(format: "%.1f", summary.statisticsSeconds)) s, \(summary.method) \(String(format: "%.1f", summary.methodSeconds)) s)"
    outputs.note = note  // the pipeline prints it with the plan's notes and the report keeps it
    return outputs
  }
}
