import CheckpointIO
import Foundation
import LinearAlgebra

/// What a module's input looked like over the calibration tokens, at the moment its layer is
/// compressed (after every earlier layer was compressed).
public struct ModuleInputs: Sendable {
  /// Tokens seen.
  public var count: Int
  /// Per input channel Σ x² over the tokens (Wanda's norm is its square root).
  public var sumSquares: [Double]
  /// Per input channel Σ |x| over the tokens (ASVD's scaling).
  public var sumAbs: [Double]
  /// XᵀX, row-major [columns, columns] (accumulated in Double, stored Float), when the method
  /// asked for it.
  public var gram: [Float]?
  /// H's factorization, shared by the modules that read this same input (nil: not shared).
  public var shared: SharedFactorization?

  public init(
    count: Int, sumSquares: [Double], sumAbs: [Double], gram: [Float]?, shared: SharedFactorization? = nil
  ) {
    self.count = count
    self.sumSquares = sumSquares
    self.sumAbs = sumAbs
    self.gram = gram
    self.shared = shared
  }
}

/// One module compressed by a calibrated method.
public struct CalibratedModule: Sendable {
  /// The stored outputs of the module's weight, as the pass planned them.
  public var result: TransformResult
  /// The dense values the later layers compute with (what `decompress` gives back).
  public var dense: [Float]
  /// Warnings for the user (dampening raised, ...).
  public var warnings: [String]

  public init(result: TransformResult, dense: [Float], warnings: [String] = []) {
    self.result = result
    self.dense = dense
    self.warnings = warnings
  }
}

/// A method that compresses a module's weight from its inputs (GPTQ, SparseGPT, Wanda,
/// activation-aware factorization), driven layer by layer by `LayerwiseCalibration`.
public protocol CalibratedMethod {
  /// The method's name in progress and reports ("gptq").
  var name: String { get }
  /// Whether it needs XᵀX (GPTQ, SparseGPT, SVD-LLM) or only the channel sums (Wanda).
  var needsGram: Bool { get }
  /// Whether the weight `weight` of module `module` is compressed by the method (else it is
  /// left to the pass: kept, or compressed without data).
  func selects(_ weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> Bool
  /// What the pass does without data to a module the layers never reach ("round to nearest").
  var fallback: String { get }
  /// Compresses one module's weight (the original dense tensor) given its inputs.
  func compress(_ weight: TensorInput, module: String, inputs: ModuleInputs) throws(SwiftCompressError)
    -> CalibratedModule
}

/// Figures of one calibrated run, for the report and the command's summary.
public struct CalibrationSummary: Codable, Sendable, Equatable {
  public var method: String
  public var modules: Int
  public var layers: Int
  public var samples: Int
  public var tokens: Int
  /// A hash of the token ids (the data's fingerprint).
  public var tokenHash: String
  public var seconds: Double
  /// Of `seconds`: the forward passes (both per layer, without the statistics), gathering the
  /// statistics (XᵀX, channel sums), and the method itself.
  public var forwardSeconds: Double
  public var statisticsSeconds: Double
  public var methodSeconds: Double
  public var warnings: [String]
}

/// The layer-by-layer driver of the calibrated methods (llm-compressor's "sequential"
/// pipeline): the calibration tokens' hidden states are kept for every sample; for each layer in
/// order, (1) the layer runs on them with its original weights while its modules' inputs are
/// gathered, (2) the method compresses each selected module from those inputs, (3) the layer runs
/// again with the compressed weights (decoded, as `decompress` gives them) to give the next
/// layer its inputs. So each layer is calibrated on what the compressed model before it computes.
///
/// Memory: the hidden states of all samples (tokens x hidden size x 4 bytes), one layer's
/// weights and activations for one batch, one layer's statistics (XᵀX per input), and the
/// compressed outputs, which go to `CalibratedOutputs` (a file) as soon as they are made.
public final class LayerwiseCalibration {
  public let model: any LayerByLayerModel
  public let path: String
  /// Tokens per forward batch (bounds the activations of one layer run).
  public var batchTokens: Int
  /// Called after each layer with (layer, layers).
  public var onLayer: ((Int, Int) -> Void)?

  public init(path: String, batchTokens: Int = 4096) throws {
    self.path = path
    guard let model = try ForwardModels.open(path) as? any LayerByLayerModel else {
      throw SwiftCompressError.invalidCheckpoint(path: path, reason: "its forward pass cannot run layer by layer")
    }
    self.model = model
    self.batchTokens = batchTokens
    guard model.weights.layout == nil else {
      throw SwiftCompressError.invalidCheckpoint(
        path: path,
        reason:
          "is already compressed; calibrated methods start from dense weights: run 'swiftcompress decompress' first")
    }
  }

  /// Runs `method` over every layer on `sequences` and puts each compressed module's outputs into
  /// `outputs` (by weight name).
  public func run(
    _ method: any CalibratedMethod, sequences: [[Int32]], tokenHash: String, into outputs: CalibratedOutputs
  ) throws -> CalibrationSummary {
    let started = Date()
    let weights = model.weights
    let checkpoint = weights.checkpoint
    let batches = evaluationBatches(sequences, batchTokens: batchTokens).map { TokenBatch(Array(sequences[$0])) }
    var hidden = try batches.map { try model.embed($0) }
    var warnings: [String] = []
    var compressed = 0
    var visited: Set<String> = []
    var (forwardSeconds, statisticsSeconds, methodSeconds) = (0.0, 0.0, 0.0)
    for layer in 0..<model.layerCount {
      let statistics = ActivationStatistics(gram: method.needsGram, excluding: [])
      var clock = Date()
      for (b, batch) in batches.enumerated() {
        var states = hidden[b]
        try model.runLayer(layer, &states, batch: batch, observer: statistics)
      }
      statistics.releaseScratch()
      forwardSeconds += Date().timeIntervalSince(clock) - statistics.seconds
      statisticsSeconds += statistics.seconds
      clock = Date()
      // The layer's selected modules, in order, and how many read each input.
      var work: [(module: String, tensor: CheckpointTensor, accumulator: ActivationStatistics.Accumulator)] = []
      var readers: [ObjectIdentifier: Int] = [:]
      for group in model.linearModules(ofLayer: layer) {
        for module in group {
          guard let tensor = checkpoint.tensor(named: module + ".weight") else { continue }
          guard try method.selects(TensorDescriptor(tensor.info), module: module) else { continue }
          guard let accumulator = statistics.modules[module] else {
            throw SwiftCompressError.invalidModule(name: module, reason: "the forward pass never read its input")
          }
          work.append((module, tensor, accumulator))
          readers[ObjectIdentifier(accumulator), default: 0] += 1
        }
      }
      // Modules reading one input (q, k and v) share its statistics, H and H's factorization,
      // which go as soon as the last of them is done.
      var shared: [ObjectIdentifier: ModuleInputs] = [:]
      for (module, tensor, accumulator) in work {
        let name = module + ".weight"
        let descriptor = TensorDescriptor(tensor.info)
        let key = ObjectIdentifier(accumulator)
        let inputs =
          shared[key]
          ?? ModuleInputs(
            count: accumulator.count, sumSquares: accumulator.sumSquares, sumAbs: accumulator.sumAbs,
            gram: accumulator.takeGramMatrix(), shared: SharedFactorization())
        readers[key]! -= 1
        shared[key] = readers[key]! > 0 ? inputs : nil
        let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor)) { name in
          checkpoint.tensor(named: name).map {
            TensorInput(descriptor: TensorDescriptor($0.info), bytes: checkpoint.bytes(of: $0))
          }
        }
        let done = try method.compress(input, module: module, inputs: inputs)
        checkpoint.release(tensor)
        try outputs.add(name, done.result)
        visited.insert(name)
        weights.override(name, with: done.dense)
        warnings += done.warnings
        compressed += 1
      }
      methodSeconds += Date().timeIntervalSince(clock)
      clock = Date()
      // The compressed layer's outputs feed the next layer (the last one's are not needed).
      if layer + 1 < model.layerCount {
        for (b, batch) in batches.enumerated() {
          try model.runLayer(layer, &hidden[b], batch: batch, observer: nil)
        }
      }
      weights.clearOverrides()
      forwardSeconds += Date().timeIntervalSince(clock)
      onLayer?(layer, model.layerCount)
    }
    // Modules outside the layers (a BERT pooler) are not reached: the pass compresses them without data.
    var outside: [String] = []
    for tensor in checkpoint.tensors where !visited.contains(tensor.name) {
      guard let module = LinearWeights.module(of: tensor.name),
        try method.selects(TensorDescriptor(tensor.info), module: module)
      else { continue }
      outside.append(module)
    }
    if !outside.isEmpty {
      warnings.append(
        "\(Format.count(outside.count, "module")) outside the model's layers (\(outside.sorted().joined(separator: ", "))) \(outside.count == 1 ? "is" : "are") compressed without calibration data: \(method.fallback)"
      )
    }
    return CalibrationSummary(
      method: method.name, modules: compressed, layers: model.layerCount, samples: sequences.count,
      tokens: sequences.reduce(0) { $0 + $1.count }, tokenHash: tokenHash,
      seconds: Date().timeIntervalSince(started), forwardSeconds: forwardSeconds, statisticsSeconds: statisticsSeconds,
      methodSeconds: methodSeconds, warnings: warnings)
  }
}

/// The outputs of the modules a calibrated method compressed, kept in a temporary file until the
/// pass writes them (so memory does not hold the compressed model), by weight name.
public final class CalibratedOutputs: @unchecked Sendable {
  private struct Entry {
    var ranges: [Range<Int>]
    var reconstruction: Reconstruction
    var baseline: ErrorAccumulator?
    var sparsity: SparsityInfo?
  }
  private let lock = NSLock()
  private var entries: [String: Entry] = [:]
  private let handle: FileHandle
  private let url: URL
  private var size = 0
  /// What was calibrated and on which data.
  public var summary: CalibrationSummary?
  /// The same as one line for the report's notes and standard error.
  public var note: String?

  public init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "swiftcompress-calibrated-\(UUID().uuidString).bin")
    guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
      throw CheckpointError.cannotCreateOutput(path: url.path, reason: "cannot create the calibration spill file")
    }
    handle = try FileHandle(forUpdating: url)
  }

  deinit {
    try? handle.close()
    try? FileManager.default.removeItem(at: url)
  }

  /// The weights it holds.
  public var names: Set<String> {
    lock.lock()
    defer { lock.unlock() }
    return Set(entries.keys)
  }

  func add(_ name: String, _ result: TransformResult) throws {
    lock.lock()
    defer { lock.unlock() }
    var ranges: [Range<Int>] = []
    for output in result.outputs {
      guard case .owned(let bytes) = output else {
        throw SwiftCompressError.passBrokePlan(
          pass: "calibration", tensor: name, reason: "a calibrated output must own its bytes")
      }
      try handle.seek(toOffset: UInt64(size))
      try handle.write(contentsOf: Data(bytes))
      ranges.append(size..<(size + bytes.count))
      size += bytes.count
    }
    if case .dense = result.reconstruction {
      // Dense values would keep the whole model in memory: methods measure the error themselves.
      throw SwiftCompressError.passBrokePlan(
        pass: "calibration", tensor: name, reason: "a calibrated result must measure its own error")
    }
    entries[name] = Entry(
      ranges: ranges, reconstruction: result.reconstruction, baseline: result.baseline, sparsity: result.sparsity)
  }

  /// The stored result of weight `name`, nil when it was not calibrated.
  public func result(for name: String) throws(SwiftCompressError) -> TransformResult? {
    lock.lock()
    defer { lock.unlock() }
    guard let entry = entries[name] else { return nil }
    var outputs: [OutputData] = []
    for range in entry.ranges {
      do {
        try handle.seek(toOffset: UInt64(range.lowerBound))
        let data = try handle.read(upToCount: range.count) ?? Data()
        guard data.count == range.count else {
          throw SwiftCompressError.invalidFile(path: url.path, reason: "ended early")
        }
        outputs.append(.owned([UInt8](data)))
      } catch {
        throw .invalidFile(path: url.path, reason: "the calibrated outputs could not be read back: \(error)")
      }
    }
    return TransformResult(
      outputs: outputs, reconstruction: entry.reconstruction, baseline: entry.baseline, sparsity: entry.sparsity)
  }
}
