// Benchmarks for `make bench`. Each measures a ratio against a reference taken in the
// same run (memcpy bandwidth of this machine), because shared machines are noisy.
//
//   swiftcompress-bench pipeline --checkpoint DIR --swiftcompress BIN [--runs 3]
//
// pushes the checkpoint through the identity pass (`swiftcompress convert IN OUT`) in a
// child process and prints its throughput as a ratio of single-thread memcpy bandwidth
// and of a plain in-kernel copy of the same file to the same disk (what `cp` does,
// the file system's ceiling), and the child's peak RSS against the largest tensor.
// Dirty pages are flushed (sync) before every timed run, outside the timing.
import CKernels
import CheckpointIO
import Foundation
import LinearAlgebra
import SwiftCompressKit

#if canImport(Glibc)
  import Glibc
#endif

struct BenchError: Error, CustomStringConvertible {
  var description: String
}

func argument(_ name: String, in arguments: [String]) -> String? {
  guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
  return arguments[i + 1]
}

func now() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// CPU seconds of the whole process (all threads): steadier than wall time on a shared
/// machine when BLAS runs on one thread.
func cpuNow() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Best-of-`repeats` single-thread memcpy bandwidth over `bytes`-sized buffers, in bytes/s.
func memcpyBandwidth(bytes: Int = 256 << 20, repeats: Int = 7) -> Double {
  let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  let destination = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  defer {
    source.deallocate()
    destination.deallocate()
  }
  memset(source, 1, bytes)
  memset(destination, 2, bytes)
  var best = Double.infinity
  for _ in 0..<repeats {
    let start = now()
    memcpy(destination, source, bytes)
    best = min(best, now() - start)
  }
  return Double(bytes) / best
}

/// memcpy into freshly mapped pages (each repeat maps a new destination), in bytes/s:
/// what any writer of new data pays for the kernel to provide zeroed pages.
func freshPageMemcpyBandwidth(bytes: Int = 256 << 20, repeats: Int = 5) -> Double {
  let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  defer { source.deallocate() }
  memset(source, 1, bytes)
  var best = Double.infinity
  for _ in 0..<repeats {
    guard let destination = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      destination != MAP_FAILED
    else { continue }
    let start = now()
    memcpy(destination, source, bytes)
    best = min(best, now() - start)
    munmap(destination, bytes)
  }
  return Double(bytes) / best
}

/// Runs `executable` with `arguments`; returns stdout, wall seconds and the child's peak RSS.
func runChild(_ executable: String, _ arguments: [String]) throws -> (stdout: Data, seconds: Double, peakRSS: Int) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  let pipe = Pipe()
  process.standardOutput = pipe
  let start = now()
  try process.run()
  let output = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  let seconds = now() - start
  guard process.terminationStatus == 0 else {
    throw BenchError(
      description: "\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
  }
  var usage = rusage()
  getrusage(RUSAGE_CHILDREN.rawValue, &usage)  // maximum over waited-for children so far
  return (output, seconds, Int(usage.ru_maxrss) * 1024)
}

/// Seconds to copy `path` to `destination` with copy_file_range, as `cp` does.
func fileCopySeconds(_ path: String, to destination: String) throws -> Double {
  let source = try MappedFile(path: path)
  unlink(destination)
  let out = open(destination, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  guard out >= 0 else { throw BenchError(description: "cannot create \(destination)") }
  defer {
    close(out)
    unlink(destination)
  }
  let start = now()
  var offset = 0
  while offset < source.size {
    let n = sck_copy_file_range(source.descriptor, Int64(offset), out, source.size - offset)
    guard n > 0 else { throw BenchError(description: "copy_file_range failed: \(n)") }
    offset += Int(n)
  }
  return now() - start
}

/// Bytes per second by name from the JSON lines a numpy reference script prints
/// ({key: name, "seconds": ..., "bytes": ...}).
func numpyRates(_ stdout: Data, key: String) throws -> [String: Double] {
  var rates: [String: Double] = [:]
  for line in String(decoding: stdout, as: UTF8.self).split(separator: "\n") {
    guard let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      let name = json[key] as? String, let seconds = json["seconds"] as? Double, let bytes = json["bytes"] as? Int
    else { continue }
    rates[name] = Double(bytes) / seconds
  }
  return rates
}

func gb(_ bytesPerSecond: Double) -> String { String(format: "%.2f GB/s", bytesPerSecond / 1e9) }
func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

func pipelineBenchmark(_ arguments: [String]) throws {
  guard let checkpointPath = argument("--checkpoint", in: arguments),
    let binary = argument("--swiftcompress", in: arguments)
  else {
    throw BenchError(description: "usage: swiftcompress-bench pipeline --checkpoint DIR --swiftcompress BIN [--runs N]")
  }
  let runs = Int(argument("--runs", in: arguments) ?? "3") ?? 3
  let checkpoint = try Checkpoint.open(checkpointPath)
  let totalBytes = checkpoint.tensorByteCount
  let largest = checkpoint.tensors.map(\.info.byteCount).max() ?? 0
  let output = (checkpointPath as NSString).deletingLastPathComponent + "/identity-out"

  print(
    "checkpoint: \(checkpointPath): \(checkpoint.tensors.count) tensors, \(mib(totalBytes)), largest tensor \(mib(largest))"
  )
  let bandwidth = memcpyBandwidth()
  print("memcpy (1 thread, 256 MiB, best of 7): \(gb(bandwidth))")
  let freshBandwidth = freshPageMemcpyBandwidth()
  print("memcpy into newly mapped pages (1 thread, 256 MiB, best of 5): \(gb(freshBandwidth))")

  sync()
  var copyBest = Double.infinity
  for _ in 0..<runs {
    sync()
    copyBest = min(copyBest, try fileCopySeconds(checkpoint.files[0].path, to: output + ".copy"))
  }
  let copyRate = Double(checkpoint.files[0].mapping.size) / copyBest
  print("plain file copy to the same disk (copy_file_range, best of \(runs)): \(gb(copyRate))")

  func identityRuns(to destination: String, label: String) throws -> (rate: Double, rss: Int) {
    var best = (seconds: Double.infinity, rss: 0)
    for run in 1...runs {
      try? FileManager.default.removeItem(atPath: destination)
      sync()
      let result = try runChild(binary, ["convert", checkpointPath, destination, "--json", "--force"])
      let json = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
      let timing = json?["timing"] as? [String: Any]
      let seconds = timing?["seconds"] as? Double ?? result.seconds
      let rss = timing?["peak_rss_bytes"] as? Int ?? result.peakRSS
      print(
        String(
          format: "%@ run %d: %.3f s in the pipeline (%.3f s whole process), %@, peak RSS %@", label, run, seconds,
          result.seconds, gb(Double(totalBytes) / seconds), mib(rss)))
      if seconds < best.seconds { best = (seconds, rss) }
    }
    try? FileManager.default.removeItem(atPath: destination)
    return (Double(totalBytes) / best.seconds, best.rss)
  }

  let disk = try identityRuns(to: output, label: "identity -> same disk")
  var tmpfs: (rate: Double, rss: Int)?
  if FileManager.default.fileExists(atPath: "/dev/shm") {
    tmpfs = try identityRuns(to: "/dev/shm/swiftcompress-bench-identity", label: "identity -> tmpfs")
  }
  let rssLimit = Int(1.5 * Double(largest)) + (64 << 20)
  let worstRSS = max(disk.rss, tmpfs?.rss ?? 0)
  print("")
  print(
    String(
      format: "identity pass, same disk: %@ = %.2f x memcpy bandwidth (goal >= 0.5: %@), %.2f x plain file copy",
      gb(disk.rate), disk.rate / bandwidth, disk.rate / bandwidth >= 0.5 ? "met" : "NOT met", disk.rate / copyRate))
  if let tmpfs {
    print(
      String(
        format: "identity pass, tmpfs:     %@ = %.2f x memcpy bandwidth, %.2f x memcpy into new pages", gb(tmpfs.rate),
        tmpfs.rate / bandwidth, tmpfs.rate / freshBandwidth))
  }
  print(
    "peak RSS: \(mib(worstRSS)) = \(String(format: "%.2f", Double(worstRSS) / Double(max(largest, 1)))) x largest tensor; goal < 1.5 x largest + 64 MiB = \(mib(rssLimit)): \(worstRSS < rssLimit ? "met" : "NOT met")"
  )
}

/// The options every tool-against-numpy benchmark takes.
struct ToolAndReference {
  var checkpoint: String
  var binary: String
  var python: String
  var script: String
  var repeats: Int

  init(_ arguments: [String], command: String) throws {
    guard let checkpoint = argument("--checkpoint", in: arguments),
      let binary = argument("--swiftcompress", in: arguments), let python = argument("--python", in: arguments),
      let script = argument("--numpy-script", in: arguments)
    else {
      throw BenchError(
        description:
          "usage: swiftcompress-bench \(command) --checkpoint DIR --swiftcompress BIN --python PY --numpy-script FILE [--repeats N]"
      )
    }
    (self.checkpoint, self.binary, self.python, self.script) = (checkpoint, binary, python, script)
    repeats = Int(argument("--repeats", in: arguments) ?? "3") ?? 3
  }

  /// The best throughput and the highest peak RSS of `repeats` runs of the tool writing
  /// into `output` (flushed to disk before each run, outside the timing).
  func bestRun(_ toolArguments: [String], output: String) throws -> (rate: Double, rss: Int) {
    var rate = 0.0
    var rss = 0
    for _ in 0..<repeats {
      try? FileManager.default.removeItem(atPath: output)
      sync()
      let result = try runChild(binary, toolArguments + ["--json", "--force"])
      let json = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
      let timing = json?["timing"] as? [String: Any]
      rate = max(rate, timing?["bytes_per_second"] as? Double ?? 0)
      rss = max(rss, timing?["peak_rss_bytes"] as? Int ?? 0)
    }
    return (rate, rss)
  }
}

/// `swiftcompress quantize` per scheme against the vectorised numpy implementation in
/// Benchmarks/quantize_numpy.py, run in the same invocation on the same checkpoint.
func quantizeBenchmark(_ arguments: [String]) throws {
  let bench = try ToolAndReference(arguments, command: "quantize")
  let (checkpointPath, python, script) = (bench.checkpoint, bench.python, bench.script)
  let schemes =
    (argument("--schemes", in: arguments) ?? "W8A16,W4A16,W4A16_ASYM,FP8_DYNAMIC,FP8_BLOCK,MXFP4A16,NVFP4A16")
    .split(separator: ",").map(String.init)
  let checkpoint = try Checkpoint.open(checkpointPath)
  let largest = checkpoint.tensors.map(\.info.byteCount).max() ?? 0
  let bandwidth = memcpyBandwidth()
  print(
    "checkpoint: \(checkpointPath), \(mib(checkpoint.tensorByteCount)), largest tensor \(mib(largest)); memcpy \(gb(bandwidth))"
  )
  let repeats = bench.repeats
  let numpy = try runChild(
    python, [script, checkpointPath, "--schemes", schemes.joined(separator: ","), "--repeats", String(repeats)])
  let numpyRate = try numpyRates(numpy.stdout, key: "scheme")
  let output = (checkpointPath as NSString).deletingLastPathComponent + "/quantize-out"
  let rssLimit = 2 * largest + (64 << 20)
  print("")
  print("scheme        swiftcompress   x numpy   x memcpy   peak RSS (goal < \(mib(rssLimit)))   best of \(repeats)")
  for scheme in schemes {
    let (rate, rss) = try bench.bestRun(["quantize", checkpointPath, output, "--scheme", scheme], output: output)
    let versusNumpy = numpyRate[scheme].map { String(format: "%7.2f", rate / $0) } ?? "      -"
    let name = scheme.padding(toLength: 12, withPad: " ", startingAt: 0)
    let speed = gb(rate).padding(toLength: 13, withPad: " ", startingAt: 0)
    print(
      "\(name)  \(speed) \(versusNumpy)   \(String(format: "%7.3f", rate / bandwidth))   \(mib(rss)) \(rss < rssLimit ? "(met)" : "(NOT met)")"
    )
  }
  try? FileManager.default.removeItem(atPath: output)
  print(
    "numpy (one thread, whole-tensor arrays, load included, best of \(repeats)): "
      + schemes.map { "\($0) \(gb(numpyRate[$0] ?? 0))" }.joined(separator: ", "))
}

/// `swiftcompress prune` on the benchmark checkpoint, each method against
/// Benchmarks/prune_numpy.py (the same job: read, choose the mask, write the pruned dense
/// checkpoint) timed in the same invocation; best of --repeats for both.
func pruneBenchmark(_ arguments: [String]) throws {
  let bench = try ToolAndReference(arguments, command: "prune")
  let (checkpointPath, python, script, repeats) = (bench.checkpoint, bench.python, bench.script, bench.repeats)
  let parent = (checkpointPath as NSString).deletingLastPathComponent
  let calibration = checkpointPath + "-calibration.safetensors"
  if !FileManager.default.fileExists(atPath: calibration) {
    _ = try runChild(python, [script, checkpointPath, "--write-calibration", calibration])
  }
  let methods: [(String, [String])] = [
    ("magnitude-tensor", ["--method", "magnitude", "--sparsity", "0.5"]),
    ("magnitude-global", ["--method", "magnitude", "--sparsity", "0.5", "--scope", "global"]),
    ("2:4", ["--method", "nm", "--pattern", "2:4"]),
    ("wanda", ["--method", "wanda", "--sparsity", "0.5", "--calibration", calibration]),
  ]
  let checkpoint = try Checkpoint.open(checkpointPath)
  let largest = checkpoint.tensors.map(\.info.byteCount).max() ?? 0
  let bandwidth = memcpyBandwidth()
  print(
    "checkpoint: \(checkpointPath), \(mib(checkpoint.tensorByteCount)), largest tensor \(mib(largest)); memcpy \(gb(bandwidth))"
  )
  let numpy = try runChild(
    python,
    [
      script, checkpointPath, parent + "/prune-numpy-out", "--calibration", calibration, "--methods",
      methods.map(\.0).joined(separator: ","), "--repeats", String(repeats),
    ])
  let numpyRate = try numpyRates(numpy.stdout, key: "method")
  let output = parent + "/prune-out"
  print("")
  print("method              swiftcompress   x numpy   x memcpy   peak RSS      best of \(repeats)")
  for (name, options) in methods {
    let (rate, rss) = try bench.bestRun(["prune", checkpointPath, output] + options, output: output)
    let versusNumpy = numpyRate[name].map { String(format: "%7.2f", rate / $0) } ?? "      -"
    print(
      "\(name.padding(toLength: 18, withPad: " ", startingAt: 0))  \(gb(rate).padding(toLength: 13, withPad: " ", startingAt: 0)) \(versusNumpy)   \(String(format: "%7.3f", rate / bandwidth))   \(mib(rss))"
    )
  }
  try? FileManager.default.removeItem(atPath: output)
  print(
    "numpy (one thread, whole arrays, load and save included, best of \(repeats)): "
      + methods.map { "\($0.0) \(gb(numpyRate[$0.0] ?? 0))" }.joined(separator: ", "))
}

/// A seeded Student-t (df = 4) matrix, row-major, like trained weights' heavy tails.
func studentT(rows: Int, columns: Int, seed: UInt64) -> [Float] {
  var random = SeededGaussian(seed: seed)
  return (0..<(rows * columns)).map { _ in
    let chi = (0..<4).reduce(0.0) { sum, _ in
      let g = random.next(); return sum + g * g
    }
    return Float(random.next() / (chi / 4).squareRoot() * 0.02)
  }
}

/// Writes a row-major Float32 matrix as a .npy file.
func writeNumpy(_ values: [Float], rows: Int, columns: Int, to path: String) throws {
  var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
  while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
  header += "\n"
  var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
  data.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
  data.append(contentsOf: Array(header.utf8))
  values.withUnsafeBytes { data.append(contentsOf: $0) }
  try data.write(to: URL(fileURLWithPath: path))
}

/// Truncated SVD (sgesdd) against numpy.linalg.svd on the same matrix and the same
/// LAPACK routine, and randomized SVD (factorize's defaults) against both, at several ranks.
func factorizeBenchmark(_ arguments: [String]) throws {
  guard let python = argument("--python", in: arguments), let script = argument("--numpy-script", in: arguments),
    let work = argument("--work", in: arguments)
  else {
    throw BenchError(description: "usage: swiftcompress-bench factorize --python PY --numpy-script FILE --work DIR")
  }
  let ranks = [64, 256, 1024]
  try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
  print("shape          rank   svd s (ours / numpy = ratio)   rsvd s   svd/rsvd   rsvd error / optimum (numpy rsvd)")
  for (rows, columns) in [(4096, 4096), (4096, 11008)] {
    let w = studentT(rows: rows, columns: columns, seed: 11)
    let path = work + "/w-\(rows)x\(columns).npy"
    try writeNumpy(w, rows: rows, columns: columns, to: path)
    let wt = try Matrix.transposeOfRowMajor(w, rows: rows, columns: columns)  // W^T, no copy
    var norm = 0.0
    for v in w { norm += Double(v) * Double(v) }
    norm = norm.squareRoot()
    let start = now()
    let full = try svd(wt)
    let svdSeconds = now() - start
    let numpy = try runChild(
      python,
      [
        script, path, ranks.map(String.init).joined(separator: ","), "\(FactorizePass.defaultOversampling)",
        "\(FactorizePass.defaultPowerIterations)",
      ])
    var numpyResults: [String: (Double, Double)] = [:]
    for line in String(decoding: numpy.stdout, as: UTF8.self).split(separator: "\n") {
      guard let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let method = json["method"] as? String, let rank = json["rank"] as? Int,
        let seconds = json["seconds"] as? Double, let error = json["error"] as? Double
      else { continue }
      numpyResults["\(method)-\(rank)"] = (seconds, error)
    }
    for k in ranks {
      let optimum = Double(full.truncationError(keeping: k)) / norm
      let t0 = now()
      let r = try randomizedSVD(
        wt, rank: k, oversampling: FactorizePass.defaultOversampling,
        powerIterations: FactorizePass.defaultPowerIterations, seed: 1)
      let rsvdSeconds = now() - t0
      // ||W^T - U S V^T|| / ||W||
      var scaled = r.u.storage
      for i in 0..<k { for row in 0..<r.u.rows { scaled[row + i * r.u.rows] *= r.singularValues[i] } }
      var product = try Matrix(rows: r.u.rows, columns: r.vt.columns)
      try gemm(try Matrix(rows: r.u.rows, columns: k, columnMajor: scaled), r.vt, into: &product)
      var error = 0.0
      for (a, b) in zip(product.storage, wt.storage) { error += Double(a - b) * Double(a - b) }
      let relative = error.squareRoot() / norm
      let numpySVD = numpyResults["svd-\(k)"]?.0 ?? 0
      let numpyRSVD = numpyResults["rsvd-\(k)"]
      print(
        String(
          format: "%-13@  %4d   %6.2f / %6.2f = %5.2f        %6.2f   %7.1f    %.4f (numpy %.4f)",
          "\(rows)x\(columns)" as NSString,
          k, svdSeconds, numpySVD, numpySVD > 0 ? svdSeconds / numpySVD : 0, rsvdSeconds, svdSeconds / rsvdSeconds,
          relative / optimum, (numpyRSVD?.1 ?? 0) / optimum))
    }
    try? FileManager.default.removeItem(atPath: path)
  }
}

/// One randomized SVD setting: oversampling (a count, or a fraction of the rank with a
/// floor, "max(10,k/2)" spelled "k/2"), power iterations and normaliser.
struct RandomizedSetting: CustomStringConvertible {
  var oversampling: String
  var powerIterations: Int
  var normalizer: PowerIterationNormalizer

  /// "10:2:qr", "k/2:3:lu".
  init(_ text: Substring) throws {
    let parts = text.split(separator: ":")
    guard parts.count == 3, let q = Int(parts[1]), let n = PowerIterationNormalizer(rawValue: String(parts[2])) else {
      throw BenchError(description: "a setting is OVERSAMPLING:POWER:qr|lu, e.g. 10:4:lu or k/2:3:qr, not \(text)")
    }
    (oversampling, powerIterations, normalizer) = (String(parts[0]), q, n)
  }

  func oversampling(rank k: Int) -> Int {
    if oversampling.hasPrefix("k/"), let d = Int(oversampling.dropFirst(2)) { return max(10, k / d) }
    return Int(oversampling) ?? 10
  }

  var description: String { "p=\(oversampling) q=\(powerIterations) \(normalizer.rawValue)" }
}

/// Randomized SVD settings on the linear weights of a real checkpoint, in process (no
/// I/O in the timings): per rank, each setting's error against the Eckart-Young optimum
/// (sgesdd's singular values) over the whole selection and its worst tensor, and the
/// seconds it takes summed over the weights (best of --repeats), next to the truncated
/// SVD's (`--method svd`: sgesdd with vectors).
///
///   swiftcompress-bench rsvd --checkpoint DIR | --student-t 4096x4096 [--ranks 32,64,128] [--repeats 3]
///       [--settings 10:2:qr,10:4:lu,...] [--seeds 1]
///
/// Weights: 2-D, named *.weight, not embeddings, both sides > rank; or the seeded
/// Student-t matrix of `factorize`.
func randomizedSVDBenchmark(_ arguments: [String]) throws {
  let path = argument("--checkpoint", in: arguments)
  let synthetic = argument("--student-t", in: arguments)?.split(separator: "x").compactMap { Int($0) }
  guard path != nil || synthetic?.count == 2 else {
    throw BenchError(
      description: "usage: swiftcompress-bench rsvd --checkpoint DIR | --student-t ROWSxCOLUMNS [--ranks 32,64,128] ..."
    )
  }
  let ranks = (argument("--ranks", in: arguments) ?? "32,64,128").split(separator: ",").compactMap { Int($0) }
  let repeats = Int(argument("--repeats", in: arguments) ?? "3") ?? 3
  let seeds = UInt64(argument("--seeds", in: arguments) ?? "1") ?? 1
  let settings = try (argument("--settings", in: arguments) ?? "10:2:qr,10:4:lu").split(separator: ",").map {
    try RandomizedSetting($0)
  }
  var weights: [(name: String, wt: Matrix, sigma: [Double])] = []
  var svdSeconds = (wall: Double.infinity, cpu: Double.infinity)
  if let synthetic {
    // The matrix `factorize` benchmarks (same seed).
    let (rows, columns) = (synthetic[0], synthetic[1])
    let wt = try Matrix.transposeOfRowMajor(
      studentT(rows: rows, columns: columns, seed: 11), rows: rows, columns: columns)
    weights.append(("student-t", wt, try singularValues(wt).map { Double($0) * Double($0) }))
  }
  let checkpoint = try path.map { try Checkpoint.open($0) }
  for tensor in checkpoint?.tensors ?? []
  where tensor.info.shape.count == 2 && tensor.name.hasSuffix(".weight") && !tensor.name.contains("embed")
    && tensor.info.dtype.isFloatingPoint
  {
    guard let checkpoint else { break }
    let (rows, columns) = (tensor.info.shape[0], tensor.info.shape[1])
    let values = Float32Conversion.floats(checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: rows * columns)
    let wt = try Matrix.transposeOfRowMajor(values, rows: rows, columns: columns)
    weights.append((tensor.name, wt, try singularValues(wt).map { Double($0) * Double($0) }))
  }
  for _ in 0..<repeats {
    let (t0, c0) = (now(), cpuNow())
    for w in weights { _ = try svd(w.wt) }
    svdSeconds = (min(svdSeconds.wall, now() - t0), min(svdSeconds.cpu, cpuNow() - c0))
  }
  print(
    "\(weights.count) weights from \(path ?? "Student-t \(synthetic![0])x\(synthetic![1])"), BLAS threads \(blasThreadCount()); svd (sgesdd with vectors) "
      + String(format: "%.3f s wall, %.3f s CPU (best of %d)", svdSeconds.wall, svdSeconds.cpu, repeats))
  print("rank  setting                error/optimum: selection  worst    wall s   CPU s   svd/rsvd (CPU)")
  for k in ranks {
    let selected = weights.filter { k < min($0.wt.rows, $0.wt.columns) }
    let optimum = selected.reduce(0.0) { $0 + $1.sigma.dropFirst(k).reduce(0, +) }
    // Settings take turns within each repeat, so a busy spell on a shared machine does
    // not land on one setting only; the best of the repeats is kept.
    var seconds = [(wall: Double, cpu: Double)](repeating: (.infinity, .infinity), count: settings.count)
    for _ in 0..<repeats {
      for (s, setting) in settings.enumerated() {
        let (t0, c0) = (now(), cpuNow())
        for (i, w) in selected.enumerated() {
          _ = try randomizedSVD(
            w.wt, rank: k, oversampling: setting.oversampling(rank: k), powerIterations: setting.powerIterations,
            normalizer: setting.normalizer, seed: UInt64(i))
        }
        seconds[s] = (min(seconds[s].wall, now() - t0), min(seconds[s].cpu, cpuNow() - c0))
      }
    }
    for (s, setting) in settings.enumerated() {
      for seed in 0..<seeds {
        var error = 0.0
        var worst = 0.0
        for (i, w) in selected.enumerated() {
          let r = try randomizedSVD(
            w.wt, rank: k, oversampling: setting.oversampling(rank: k), powerIterations: setting.powerIterations,
            normalizer: setting.normalizer, seed: UInt64(i) &+ seed &* 1000)
          var scaled = r.u.storage
          for c in 0..<k { for row in 0..<r.u.rows { scaled[row + c * r.u.rows] *= r.singularValues[c] } }
          var product = try Matrix(rows: r.u.rows, columns: r.vt.columns)
          try gemm(try Matrix(rows: r.u.rows, columns: k, columnMajor: scaled), r.vt, into: &product)
          var e = 0.0
          for (a, b) in zip(product.storage, w.wt.storage) { e += Double(a - b) * Double(a - b) }
          error += e
          worst = max(worst, (e / w.sigma.dropFirst(k).reduce(0, +)).squareRoot())
        }
        print(
          String(
            format: "%4d  %-21@  %.5f                  %.5f  %7.3f  %7.3f  %6.1f", k, setting.description as NSString,
            (error / optimum).squareRoot(), worst, seconds[s].wall, seconds[s].cpu, svdSeconds.cpu / seconds[s].cpu))
      }
    }
  }
}

/// `forward --model DIR [--threads N] [--sequences S] [--length L] [--runs R] [--python PY --script Benchmarks/forward.py]`:
/// tokens/s of the CPU forward pass (final hidden states, then the logits of every token in
/// chunks of `--chunk` rows, 256 by default) on S sequences of L tokens (token t of sequence s is
/// (t·7919 + s·104729 + 13) mod vocab), best of R runs, weights decoded layer by layer as in any
/// run; with --python, transformers' float32 tokens/s on the same tokens at the same thread count
/// and the ratio.
func forwardBenchmark(_ arguments: [String]) throws {
  guard let path = argument("--model", in: arguments) else {
    throw BenchError(description: "forward needs --model DIR")
  }
  let threads = Int(argument("--threads", in: arguments) ?? "") ?? ProcessInfo.processInfo.activeProcessorCount
  let sequences = Int(argument("--sequences", in: arguments) ?? "") ?? 4
  let length = Int(argument("--length", in: arguments) ?? "") ?? 256
  let runs = Int(argument("--runs", in: arguments) ?? "") ?? 3
  let chunk = Int(argument("--chunk", in: arguments) ?? "") ?? 256
  let model = try ForwardModels.open(path)
  let vocab = model.vocabularySize
  let batch = TokenBatch(
    (0..<sequences).map { s in (0..<length).map { t in Int32((t * 7919 + s * 104729 + 13) % vocab) } })
  var best = Double.infinity
  var checksum = 0.0
  var layerSeconds = 0.0
  try Parallel.withJobs(threads) {
    for _ in 0..<runs {
      let start = now()
      let hidden = try model.finalHiddenStates(batch, observer: nil)
      checksum = 0
      let layersDone = now()
      for first in stride(from: 0, to: hidden.rows, by: chunk) {
        let rows = first..<min(first + chunk, hidden.rows)
        let logits = try model.logits(hidden, rows: rows)
        // The first 8 logits of each sequence's last token, as forward.py sums them.
        for (i, row) in rows.enumerated() where (row + 1) % length == 0 {
          checksum += logits[(i * vocab)..<(i * vocab + 8)].reduce(0.0) { $0 + Double($1) }
        }
      }
      if now() - start < best { layerSeconds = layersDone - start }
      best = min(best, now() - start)
    }
  }
  let tokens = Double(sequences * length)
  let ours = tokens / best
  print(
    String(
      format:
        "swiftcompress forward: %d x %d tokens, %d threads: %.3f s (layers %.3f s, head %.3f s), %.1f tokens/s (checksum %.6f)",
      sequences, length, threads, best, layerSeconds, best - layerSeconds, ours, checksum))
  guard let python = argument("--python", in: arguments) else { return }
  let script = argument("--script", in: arguments) ?? "Benchmarks/forward.py"
  let process = Process()
  process.executableURL = URL(fileURLWithPath: python)
  process.arguments = [
    script, path, "--threads", "\(threads)", "--sequences", "\(sequences)", "--length", "\(length)", "--runs",
    "\(runs)",
  ]
  let pipe = Pipe()
  process.standardOutput = pipe
  try process.run()
  let output = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  guard process.terminationStatus == 0,
    let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
    let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
    let theirs = record["tokens_per_second"] as? Double
  else { throw BenchError(description: "\(script) failed") }
  print(
    String(
      format: "transformers forward (float32, %@ attention): %.1f tokens/s (checksum %.6f)",
      (record["attention"] as? String ?? "?") as NSString, theirs, record["logits_checksum"] as? Double ?? .nan))
  print(String(format: "ratio (swiftcompress / transformers): %.2fx", ours / theirs))
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
  switch arguments.first {
  case "pipeline": try pipelineBenchmark(Array(arguments.dropFirst()))
  case "quantize": try quantizeBenchmark(Array(arguments.dropFirst()))
  case "prune": try pruneBenchmark(Array(arguments.dropFirst()))
  case "factorize": try factorizeBenchmark(Array(arguments.dropFirst()))
  case "rsvd": try randomizedSVDBenchmark(Array(arguments.dropFirst()))
  case "forward": try forwardBenchmark(Array(arguments.dropFirst()))
  case "forward-memory": try forwardMemoryBenchmark(Array(arguments.dropFirst()))
  case "memcpy": print("memcpy (1 thread): \(gb(memcpyBandwidth()))")
  default:
    print(
      "usage: swiftcompress-bench pipeline|quantize|prune|factorize|rsvd|forward|memcpy ... (see Benchmarks/swiftcompress-bench/main.swift)"
    )
    exit(64)
  }
} catch {
  FileHandle.standardError.write(Data("error: \(error)\n".utf8))
  exit(1)
}
