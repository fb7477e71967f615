import CKernels
import CheckpointIO
import Dispatch
import Foundation

/// How the pruned weights are chosen.
public enum PruneMethod: String, Codable, Sendable, CaseIterable {
  /// Lowest |w| (with `--pattern`: N:M by magnitude).
  case magnitude
  /// N:M by magnitude (`--pattern` required).
  case nm
  /// Lowest |w_ij| x ||X_j||: from a calibration-statistics file, or gathered layer by layer
  /// from calibration data.
  case wanda
  /// SparseGPT: the mask from w²/[H⁻¹]_jj and the pruned weights' error moved into the rest
  /// of the row, layer by layer from calibration data.
  case sparsegpt
  /// Seeded random scores: the baseline.
  case random
  /// Whole units (neurons, heads, channels) by their L1 or L2 norm.
  case structured
}

/// Where unstructured sparsity is counted.
public enum PruneScope: String, Codable, Sendable, CaseIterable {
  /// The lowest-scoring fraction of each tensor.
  case tensor
  /// Of each output row (Wanda's comparison group).
  case row
  /// One threshold over every selected tensor together.
  case global
}

/// How pruned tensors are stored.
public enum SparseFormat: String, Codable, Sendable, CaseIterable {
  /// Dense tensors with zeros, which every loader accepts.
  case dense
  /// compressed-tensors' `sparse-bitmask` (`sparse-24-bitmask` for 2:4).
  case bitmask
}

/// N kept of every M consecutive weights along the input dimension.
public struct NMPattern: Codable, Sendable, Equatable, CustomStringConvertible {
  public var n: Int
  public var m: Int

  public init(n: Int, m: Int) {
    self.n = n
    self.m = m
  }

  /// Parses "N:M"; nil when it is not two integers.
  public init?(_ text: String) {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]) else { return nil }
    self.init(n: n, m: m)
  }

  public var description: String { "\(n):\(m)" }

  /// Rejects patterns outside 1 <= N < M <= 32.
  func validate(option: String = "--pattern") throws(SwiftCompressError) {
    guard n >= 1, m <= 32, n < m else {
      throw .invalidOption(option: option, reason: "'\(self)' must have 1 <= N < M <= 32 (for example 2:4 or 4:8)")
    }
  }
}

/// Makes weights sparse: unstructured by magnitude, Wanda or random scores (per tensor,
/// per row or with one global threshold), N:M, or structured (see StructuredPruning).
/// Among equal scores the weight with the lower index is pruned first, as a stable sort
/// orders them, so results are reproducible everywhere.
public struct PrunePass: CompressionPass {
  /// The checkpoint's model adapter, from `prepared(for:)`.
  var model: any ModelAdapter = ModelAdapters.generic
  public static let identifier = "prune"
  public static let summary = "unstructured, N:M and structured pruning, stored dense or as compressed-tensors bitmasks"
  public private(set) var configuration: Configuration
  let ignoreRules: [IgnoreRule]
  let criterion: any PruningCriterion
  /// What SparseGPT, or Wanda without a statistics file, computed layer by layer
  /// (`SparseGPTMethod`, `WandaMethod`), written for the weights it holds.
  public var calibrated: CalibratedOutputs?
  /// Set by a command that will calibrate before running (and for its dry runs), so that
  /// `prepared(for:)` does not refuse a method that needs calibration data.
  public var calibrationPending = false
  /// A copy that scores with a criterion given per module (calibrated Wanda).
  var scoringCopy = false

  /// Whether the method needs calibration data (SparseGPT; Wanda without a statistics file).
  public var needsCalibrationData: Bool {
    configuration.method == .sparsegpt || (configuration.method == .wanda && configuration.calibration == nil)
  }
  /// Global scope: each tensor's threshold score and how many of its weights equal to
  /// it are pruned, from `prepared(for:)`.
  var globalThresholds: [String: GlobalThreshold] = [:]
  /// Structured pruning's plan, from `prepared(for:)`.
  var structuredPlan: StructuredPlan?

  struct GlobalThreshold: Sendable, Equatable {
    var threshold: Float
    var tiesToPrune: Int
    var pruned: Int
  }

  public init(configuration: Configuration) throws(SwiftCompressError) {
    var configuration = configuration
    if configuration.method == .nm {
      guard configuration.pattern != nil else {
        throw .invalidOption(option: "--pattern", reason: "method nm needs a pattern such as 2:4")
      }
    }
    if let pattern = configuration.pattern {
      try pattern.validate()
      guard configuration.method != .structured else {
        throw .invalidOption(option: "--pattern", reason: "does not apply to structured pruning")
      }
      if configuration.sparsity != nil {
        throw .invalidOption(
          option: "--sparsity", reason: "a pattern fixes the sparsity at 1 - N/M; give one or the other")
      }
    } else if configuration.method == .structured {
      guard let ratio = configuration.ratio, ratio >= 0, ratio < 1 else {
        throw .invalidOption(option: "--ratio", reason: "structured pruning needs a ratio of units to remove in [0, 1)")
      }
      guard configuration.structure != nil else {
        throw .invalidOption(
          option: "--structure", reason: "structured pruning needs a unit: mlp, heads, rows or columns")
      }
    } else {
      guard let sparsity = configuration.sparsity else {
        throw .invalidOption(option: "--sparsity", reason: "\(configuration.method.rawValue) pruning needs a sparsity")
      }
      guard sparsity >= 0, sparsity < 1 else {
        throw .invalidOption(option: "--sparsity", reason: "\(sparsity) is outside [0, 1)")
      }
    }
    if configuration.method != .wanda, configuration.calibration != nil {
      throw .invalidOption(option: "--calibration", reason: "only used by --method wanda")
    }
    if configuration.shrink && configuration.method != .structured {
      throw .invalidOption(option: "--shrink", reason: "only applies to structured pruning")
    }
    if configuration.method == .structured, configuration.sparseFormat != .dense {
      throw .invalidOption(option: "--sparse-format", reason: "structured pruning writes dense tensors")
    }
    if configuration.method == .nm { configuration.method = .magnitude }
    self.configuration = configuration
    ignoreRules = try configuration.ignore.map { (entry) throws(SwiftCompressError) in try IgnoreRule(entry) }
    switch configuration.method {
    case .random: criterion = RandomCriterion(seed: configuration.seed)
    case .wanda: criterion = WandaCriterion(norms: [:])
    default: criterion = MagnitudeCriterion()
    }
  }

  private init(copying pass: PrunePass, criterion: any PruningCriterion) {
    configuration = pass.configuration
    ignoreRules = pass.ignoreRules
    self.criterion = criterion
    globalThresholds = pass.globalThresholds
    structuredPlan = pass.structuredPlan
  }

  /// A copy that scores with `criterion` and writes dense values (calibrated Wanda re-encodes them).
  func scoring(with criterion: any PruningCriterion) -> PrunePass {
    var pass = PrunePass(copying: self, criterion: criterion)
    pass.configuration.sparseFormat = .dense
    pass.model = model
    pass.scoringCopy = true
    return pass
  }

  // MARK: Preparation

  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> PrunePass {
    if needsCalibrationData, calibrated == nil, !calibrationPending, !scoringCopy {
      throw .invalidOption(
        option: "--data",
        reason:
          "\(configuration.method.rawValue) needs calibration data (give --data or --tokens\(configuration.method == .wanda ? ", or --calibration FILE from 'swiftcompress calibrate'" : ""); recipes cannot give it yet)"
      )
    }
    var pass = self
    try StoredLayout.refuseCompressed(checkpoint)
    pass.model = ModelAdapters.adapter(for: checkpoint)
    if configuration.method == .structured {
      pass.structuredPlan = try StructuredPlan(checkpoint: checkpoint, pass: self)
      return pass
    }
    if configuration.method == .wanda, let path = configuration.calibration {
      var modules: [(String, Int)] = []
      for tensor in checkpoint.tensors {
        guard case .transform = try plan(TensorDescriptor(tensor.info)),
          let module = LinearWeights.module(of: tensor.name)
        else { continue }
        modules.append((module, tensor.info.shape[1]))
      }
      let norms = try CalibrationStatistics.load(path, modules: modules)
      pass = PrunePass(copying: pass, criterion: WandaCriterion(norms: norms))
    }
    if configuration.scope == .global, configuration.pattern == nil {
      pass.globalThresholds = try pass.computeGlobalThresholds(checkpoint)
    }
    return pass
  }

  // MARK: Planning

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    if configuration.method == .structured {
      return try planStructured(tensor)  // weights and biases, as the structured plan decided
    }
    let module: String
    switch try LinearWeights.select(tensor, ignoring: ignoreRules, verb: "pruned", model: model) {
    case .keep(let reason): return .keep(reason: reason)
    case .module(let name): module = name
    }
    let (rows, columns) = (tensor.shape[0], tensor.shape[1])
    if let pattern = configuration.pattern, columns % pattern.m != 0 {
      throw .invalidTensor(
        name: tensor.name,
        reason:
          "its rows have \(columns) values, which M = \(pattern.m) of --pattern \(pattern) does not divide; choose another pattern or --ignore \(module)"
      )
    }
    let pruned = prunedCount(tensor.name, rows: rows, columns: columns)
    let note = describe(rows: rows, columns: columns)
    guard configuration.sparseFormat == .bitmask else {
      return .transform(outputs: [tensor], note: note)
    }
    let kept = rows * columns - pruned
    let maskBytes = (columns + 7) / 8
    if let pattern = configuration.pattern, pattern.n == 2, pattern.m == 4 {
      return .transform(
        outputs: [
          PlannedTensor(name: module + ".shape", dtype: .i64, shape: [2, 1]),
          PlannedTensor(name: module + ".compressed", dtype: tensor.dtype, shape: [rows, columns / 2]),
          PlannedTensor(name: module + ".bitmask", dtype: .u8, shape: [rows, maskBytes]),
        ], note: note + ", sparse-24-bitmask")
    }
    return .transform(
      outputs: [
        PlannedTensor(name: module + ".shape", dtype: .i64, shape: [2]),
        PlannedTensor(name: module + ".compressed", dtype: tensor.dtype, shape: [kept]),
        PlannedTensor(name: module + ".bitmask", dtype: .u8, shape: [rows, maskBytes]),
        PlannedTensor(name: module + ".row_offsets", dtype: .i64, shape: [rows]),
      ], note: note + ", sparse-bitmask")
  }

  /// The number of weights pruned from a rows x columns tensor (known before any data
  /// is read, so the bitmask layout can be planned).
  func prunedCount(_ name: String, rows: Int, columns: Int) -> Int {
    if let pattern = configuration.pattern { return rows * columns / pattern.m * (pattern.m - pattern.n) }
    let sparsity = configuration.sparsity ?? 0
    switch configuration.scope {
    case .tensor: return Int((sparsity * Double(rows * columns)).rounded(.down))
    case .row: return rows * Int((sparsity * Double(columns)).rounded(.down))
    case .global: return globalThresholds[name]?.pruned ?? 0
    }
  }

  private func describe(rows: Int, columns: Int) -> String {
    let name = configuration.method == .sparsegpt ? "sparsegpt" : type(of: criterion).name
    let layerwise = needsCalibrationData ? " (layer by layer from calibration data)" : ""
    if let pattern = configuration.pattern { return "\(name) \(pattern)\(layerwise)" }
    let sparsity = configuration.sparsity ?? 0
    if configuration.method == .sparsegpt {
      return "sparsegpt, \(String(format: "%g", sparsity * 100))% per block of columns\(layerwise)"
    }
    return "\(name), \(String(format: "%g", sparsity * 100))% per \(configuration.scope.rawValue)\(layerwise)"
  }

  // MARK: Transform

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    if needsCalibrationData && !scoringCopy {
      guard let calibrated else {
        throw .passBrokePlan(
          pass: Self.identifier, tensor: input.descriptor.name,
          reason: "\(configuration.method.rawValue) computed no values for it (it needs calibration data)")
      }
      if let stored = try calibrated.result(for: input.descriptor.name) { return stored }
      // A module outside the layers the calibration runs through: by magnitude (the run warned).
      var fallback = PrunePass(copying: self, criterion: MagnitudeCriterion())
      fallback.scoringCopy = true
      fallback.model = model
      return try fallback.transform(input, outputs: outputs)
    }
    if configuration.method == .structured {
      return try transformStructured(input, outputs: outputs)
    }
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    guard let module = LinearWeights.module(of: input.descriptor.name) else {
      throw .passBrokePlan(pass: Self.identifier, tensor: input.descriptor.name, reason: "not a module weight")
    }
    let count = rows * columns
    // 1. The keep mask, one byte per weight.
    var keep: [UInt8] = RowLoops.uninitialized(count)
    try keep.withUnsafeMutableBufferPointer { (mask) throws(SwiftCompressError) in
      try computeMask(input, module: module, rows: rows, columns: columns, into: mask)
    }
    // 2. The outputs, the error, the zeros and the N:M check, rows in parallel.
    let elementSize = input.descriptor.dtype.bitsPerElement / 8
    let rowBytes = columns * elementSize
    var rowKept = [Int](repeating: 0, count: rows)
    var rowZeros = [Int](repeating: 0, count: rows)
    var rowOver = [Int](repeating: 0, count: rows)
    let writeDense = configuration.sparseFormat == .dense
    var dense: [UInt8] = writeDense ? RowLoops.uninitialized(count * elementSize) : []
    let pattern = configuration.pattern
    let error = keep.withUnsafeBufferPointer { mask in
      dense.withUnsafeMutableBytes { denseOut in
        rowKept.withUnsafeMutableBufferPointer { keptOut in
          rowZeros.withUnsafeMutableBufferPointer { zerosOut in
            rowOver.withUnsafeMutableBufferPointer { overOut in
              nonisolated(unsafe) let (mask, denseOut, keptOut, zerosOut, overOut) = (
                mask, denseOut, keptOut, zerosOut, overOut
              )
              return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
                let rowMask = mask.baseAddress! + row * columns
                var zeros = 0
                keptOut[row] = sck_mask_row(values.baseAddress, rowMask, columns, reconstruction.baseAddress, &zeros)
                zerosOut[row] = zeros
                if let pattern {
                  overOut[row] = sck_groups_over(
                    reconstruction.baseAddress, columns, Int32(pattern.n), Int32(pattern.m))
                }
                if writeDense {
                  sck_apply_mask(
                    input.bytes.baseAddress! + row * rowBytes, columns, elementSize, rowMask,
                    denseOut.baseAddress! + row * rowBytes)
                }
              }
            }
          }
        }
      }
    }
    try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns, purpose: "pruning")
    let kept = rowKept.reduce(0, +)
    var sparsity = SparsityInfo(
      target: pattern.map { 1 - Double($0.n) / Double($0.m) } ?? configuration.sparsity,
      achieved: count > 0 ? Double(rowZeros.reduce(0, +)) / Double(count) : 0, zeros: rowZeros.reduce(0, +),
      pruned: count - kept)
    if let pattern {
      sparsity.pattern = pattern.description
      sparsity.patternHolds = rowOver.allSatisfy { $0 == 0 }
    }
    if configuration.sparseFormat == .dense {
      return TransformResult(outputs: [.owned(dense)], reconstruction: .measured(error), sparsity: sparsity)
    }
    let data = try SparseBitmask.encode(
      input, keep: keep, rowKept: rowKept, rows: rows, columns: columns, outputs: outputs,
      twoFour: outputs.count == 3)
    return TransformResult(outputs: data, reconstruction: .measured(error), sparsity: sparsity)
  }

  /// Fills `mask` (rows x columns) with 1 for kept weights.
  private func computeMask(
    _ input: TensorInput, module: String, rows: Int, columns: Int, into mask: UnsafeMutableBufferPointer<UInt8>
  ) throws(SwiftCompressError) {
    nonisolated(unsafe) let mask = mask
    let criterion = self.criterion
    if let pattern = configuration.pattern {
      _ = RowLoops.parallelRows(input, rows: rows, columns: columns, measure: false) { row, values, scores in
        criterion.scores(module: module, row: row, values: values, into: scores)
        sck_nm_mask(scores.baseAddress, columns, Int32(pattern.n), Int32(pattern.m), mask.baseAddress! + row * columns)
      }
      return
    }
    let sparsity = configuration.sparsity ?? 0
    switch configuration.scope {
    case .row:
      let prune = Int((sparsity * Double(columns)).rounded(.down))
      _ = RowLoops.parallelRows(input, rows: rows, columns: columns, measure: false) { row, values, scores in
        criterion.scores(module: module, row: row, values: values, into: scores)
        let out = mask.baseAddress! + row * columns
        guard prune > 0 else {
          out.update(repeating: 1, count: columns)
          return
        }
        let work = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { work.deallocate() }
        // The prune-th smallest score is the first kept one; everything below it goes,
        // and of the scores equal to it, the earliest (prune - below).
        let threshold = sck_select_kth(scores.baseAddress, columns, prune - 1, work)
        var below: UInt64 = 0
        var equal: UInt64 = 0
        sck_count_below_equal(scores.baseAddress, columns, threshold, &below, &equal)
        var ties = UInt64(prune) - below
        _ = sck_threshold_mask(scores.baseAddress, columns, threshold, &ties, out)
      }
    case .tensor, .global:
      let selection: GlobalThreshold
      if configuration.scope == .global {
        selection = globalThresholds[input.descriptor.name] ?? GlobalThreshold(threshold: -1, tiesToPrune: 0, pruned: 0)
      } else {
        let prune = Int((sparsity * Double(rows * columns)).rounded(.down))
        selection =
          ScoreSelection.threshold(
            prune: prune, of: [ScoreSource(input: input, module: module, rows: rows, columns: columns)],
            criterion: criterion
          ).first ?? GlobalThreshold(threshold: -1, tiesToPrune: 0, pruned: 0)
      }
      applyThreshold(selection, input: input, module: module, rows: rows, columns: columns, mask: mask)
    }
  }

  /// Keeps scores above the threshold; of those equal to it, prunes the first
  /// `tiesToPrune` in row-major order. A negative threshold keeps everything.
  private func applyThreshold(
    _ selection: GlobalThreshold, input: TensorInput, module: String, rows: Int, columns: Int,
    mask: UnsafeMutableBufferPointer<UInt8>
  ) {
    nonisolated(unsafe) let mask = mask
    guard selection.threshold >= 0 else {
      mask.update(repeating: 1)
      return
    }
    let criterion = self.criterion
    let threshold = selection.threshold
    var rowTies = [Int](repeating: 0, count: rows)
    rowTies.withUnsafeMutableBufferPointer { tiesOut in
      nonisolated(unsafe) let tiesOut = tiesOut
      _ = RowLoops.parallelRows(input, rows: rows, columns: columns, measure: false) { row, values, scores in
        criterion.scores(module: module, row: row, values: values, into: scores)
        var none: UInt64 = 0  // keep every tie here; the first ones are pruned below, in order
        _ = sck_threshold_mask(scores.baseAddress, columns, threshold, &none, mask.baseAddress! + row * columns)
        var below: UInt64 = 0
        var ties: UInt64 = 0
        sck_count_below_equal(scores.baseAddress, columns, threshold, &below, &ties)
        tiesOut[row] = Int(ties)
      }
    }
    var remaining = selection.tiesToPrune
    var scores = [Float](repeating: 0, count: columns)
    var values = [Float](repeating: 0, count: columns)
    for row in 0..<rows where remaining > 0 && rowTies[row] > 0 {
      values.withUnsafeMutableBufferPointer { scratch in
        let rowValues = input.float32Row(row, columns: columns, scratch: scratch)
        scores.withUnsafeMutableBufferPointer { s in
          criterion.scores(module: module, row: row, values: rowValues, into: s)
          for i in 0..<columns where remaining > 0 && s[i].bitPattern == threshold.bitPattern {
            mask[row * columns + i] = 0
            remaining -= 1
          }
        }
      }
    }
  }

  // MARK: Global threshold

  /// One threshold over every selected tensor: the exact score of the k-th weight (k =
  /// floor(sparsity x total)) by a two-level radix selection on the scores' bit
  /// patterns, streaming tensor by tensor (each read twice, or three times when the
  /// weights equal to the threshold straddle tensors), never holding more than one.
  private func computeGlobalThresholds(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> [String:
    GlobalThreshold]
  {
    var sources: [ScoreSource] = []
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      guard case .transform = try plan(descriptor), let module = LinearWeights.module(of: tensor.name) else { continue }
      let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor))
      sources.append(
        ScoreSource(
          input: input, module: module, rows: descriptor.shape[0], columns: descriptor.shape[1],
          release: { checkpoint.release(tensor) }))
    }
    let total = sources.reduce(0) { $0 + $1.rows * $1.columns }
    let prune = Int(((configuration.sparsity ?? 0) * Double(total)).rounded(.down))
    let selections = ScoreSelection.threshold(prune: prune, of: sources, criterion: criterion)
    var result: [String: GlobalThreshold] = [:]
    for (source, selection) in zip(sources, selections) { result[source.input.descriptor.name] = selection }
    return result
  }
}

extension PrunePass {
  public var warnings: [String] { (calibrated?.summary?.warnings ?? []) + (structuredPlan?.warnings ?? []) }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] {
    IgnoreRule.unmatched(ignoreRules, in: checkpoint)
  }

  /// Records the sparsity in config.json for bitmask storage (compressed-tensors'
  /// `sparsity_config`, which its loader needs), and the new sizes after `--shrink`.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    if let structuredPlan, configuration.shrink {
      return structuredPlan.editedConfig(config)
    }
    guard configuration.sparseFormat == .bitmask else { return nil }
    let twoFour = configuration.pattern.map { $0.n == 2 && $0.m == 4 } ?? false
    let structure: String = configuration.pattern?.description ?? "unstructured"
    let target = configuration.pattern.map { 1 - Double($0.n) / Double($0.m) } ?? configuration.sparsity ?? 0
    let sparsityConfig: JSONValue = .object([
      JSONMember("format", .string(twoFour ? "sparse-24-bitmask" : "sparse-bitmask")),
      JSONMember("global_sparsity", .number(String(target))),
      JSONMember("ignore", .array(configuration.ignore.map { .string($0) })),
      JSONMember("registry_requires_subclass", .bool(false)),
      JSONMember("sparsity_structure", .string(structure)),
      JSONMember("targets", .array([.string("Linear")])),
    ])
    let quantization: JSONValue = .object([
      JSONMember("quant_method", .string("compressed-tensors")),
      JSONMember("sparsity_config", sparsityConfig),
      JSONMember("version", .string(SparseBitmask.compressedTensorsVersion)),
    ])
    guard let edited = config.setting("quantization_config", to: quantization) else { return nil }
    return JSONText.pretty(edited)
  }
}

extension PrunePass {
  /// The pruned tensor's values; a tensor structured pruning cut is put back in its shape,
  /// with zeros where units were removed.
  public func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError)
    -> [Float]
  {
    guard outputs.planned.count == 1 else {
      throw .passBrokePlan(
        pass: Self.identifier, tensor: input.name, reason: "cannot decode \(outputs.planned.count) outputs")
    }
    let values = try outputs.dense(0)
    return expandShrunk(values, of: input) ?? values
  }
}
