// swiftcompress-bench forward-memory --model DIR --swiftcompress BIN [--threads 2] [--samples 8] [--seq-len 256]
//
// The peak RSS of `calibrate` (with and without --hessians) and `evaluate` (the model against
// itself) in child processes, against the bound they promise: the larger of one layer's weights
// and the output head (as F32, what the forward pass holds), plus the batch's activations, plus
// 64 MB, on a model several times larger than that bound (Scripts/make_large_model.py).
import CheckpointIO
import Foundation
import SwiftCompressKit

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `executable` with `arguments` (stdout to /dev/null); returns wall seconds and this child's own
/// peak RSS (wait4, so an earlier child's peak does not carry over).
func runChildOwnRSS(_ executable: String, _ arguments: [String]) throws -> (seconds: Double, peakRSS: Int) {
  var pid: pid_t = 0
  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  defer { posix_spawn_file_actions_destroy(&actions) }
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
  let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
  defer { argv.forEach { free($0) } }
  let start = now()
  let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
  guard spawned == 0 else { throw BenchError(description: "cannot run \(executable): error \(spawned)") }
  var status: Int32 = 0
  var usage = rusage()
  guard wait4(pid, &status, 0, &usage) == pid else { throw BenchError(description: "wait4 failed") }
  let seconds = now() - start
  guard status == 0 else {
    throw BenchError(description: "\(executable) \(arguments.joined(separator: " ")) exited with status \(status)")
  }
  return (seconds, Int(usage.ru_maxrss) * 1024)
}

func forwardMemoryBenchmark(_ arguments: [String]) throws {
  guard let modelPath = argument("--model", in: arguments), let binary = argument("--swiftcompress", in: arguments)
  else {
    throw BenchError(
      description:
        "usage: swiftcompress-bench forward-memory --model DIR --swiftcompress BIN [--threads N] [--samples N] [--seq-len L]"
    )
  }
  let threads = Int(argument("--threads", in: arguments) ?? "2") ?? 2
  let samples = Int(argument("--samples", in: arguments) ?? "8") ?? 8
  let length = Int(argument("--seq-len", in: arguments) ?? "256") ?? 256
  let checkpoint = try Checkpoint.open(modelPath)
  let description = ModelAdapters.adapter(for: checkpoint).model
  let hidden = description.dimensions.hiddenSize ?? 0
  let vocabulary = description.dimensions.vocabularySize ?? 0
  guard hidden > 0, vocabulary > 3 else { throw BenchError(description: "\(modelPath): no hidden_size/vocab_size") }
  print(
    "model: \(modelPath): \(description.layers.count) layers, hidden \(hidden), vocabulary \(vocabulary), \(mib(checkpoint.tensorByteCount))"
  )
  // Seeded token ids (a linear congruential generator: the same file every run).
  var state: UInt64 = 0x9E37_79B9_7F4A_7C15
  let sequences: [[Int]] = (0..<samples).map { _ in
    (0..<length).map { _ in
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return 3 + Int((state >> 33) % UInt64(vocabulary - 3))
    }
  }
  let work = NSTemporaryDirectory() + "swiftcompress-bench-memory-\(getpid())"
  try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: work) }
  let tokensPath = work + "/tokens.jsonl"
  let lines = sequences.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }
  try (lines.joined(separator: "\n") + "\n").write(toFile: tokensPath, atomically: true, encoding: .utf8)
  let tokens = samples * length

  var largestLayer = 0
  for layer in description.layers {
    let bytes = checkpoint.tensors.filter { $0.name.hasPrefix(layer.name + ".") }.reduce(0) {
      $0 + $1.info.elementCount * 4
    }
    largestLayer = max(largestLayer, bytes)
  }
  let head =
    checkpoint.tensors.filter { $0.name == "lm_head.weight" || $0.name.hasSuffix("embed_tokens.weight") }
    .map { $0.info.elementCount * 4 }.max() ?? 0
  let intermediate = description.dimensions.intermediateSize ?? 4 * hidden
  // Per token: the residual stream, the normed input, q/k/v and the attention output (<= 4 hidden),
  // gate and up (2 intermediate): what a layer holds for the whole batch.
  let activations = tokens * (6 * hidden + 2 * intermediate) * 4
  let bound = max(largestLayer, head) + activations + (64 << 20)
  print(
    "memory bound: max(largest layer \(mib(largestLayer)), head \(mib(head))) + activations \(mib(activations)) + 64 MiB = \(mib(bound)); model \(mib(checkpoint.tensorByteCount)) (\(String(format: "%.1f", Double(checkpoint.tensorByteCount) / Double(bound)))x the bound)"
  )
  let jobs = ["--jobs", "\(threads)"]
  let calibrate = try runChildOwnRSS(
    binary, ["calibrate", modelPath, "--tokens", tokensPath, "-o", work + "/stats.safetensors"] + jobs)
  let calibrateHessians = try runChildOwnRSS(
    binary, ["calibrate", modelPath, "--tokens", tokensPath, "-o", work + "/stats-h.safetensors", "--hessians"] + jobs)
  // --hessians keeps a Double C x C accumulator per distinct input of every layer for the whole run,
  // and writes each module's F32 copy: statistics, not working memory; stated beside the bound.
  var gramBytes = 0
  for layer in description.layers {
    var seen: Set<String> = []
    for module in layer.modules {
      let key = "\(module.input)"
      guard !seen.contains(key), let weight = checkpoint.tensor(named: module.name + ".weight"),
        weight.info.shape.count == 2
      else { continue }
      seen.insert(key)
      gramBytes += weight.info.shape[1] * weight.info.shape[1] * 8
    }
  }
  let evaluate = try runChildOwnRSS(binary, ["evaluate", modelPath, modelPath, "--tokens", tokensPath] + jobs)
  for (label, run) in [("calibrate", calibrate), ("evaluate (the model against itself)", evaluate)] {
    print(
      String(
        format: "%@: %.2f s, peak RSS %@ = %.2f x the bound (goal <= 1: %@)", label, run.seconds, mib(run.peakRSS),
        Double(run.peakRSS) / Double(bound), run.peakRSS <= bound ? "met" : "NOT met"))
  }
  print(
    String(
      format: "calibrate --hessians: %.2f s, peak RSS %@ = the bound + %@ of Double XᵀX accumulators (%.2f x that sum)",
      calibrateHessians.seconds, mib(calibrateHessians.peakRSS), mib(gramBytes),
      Double(calibrateHessians.peakRSS) / Double(bound + gramBytes)))
}
