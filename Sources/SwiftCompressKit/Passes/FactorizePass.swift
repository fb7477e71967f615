import CheckpointIO
import Foundation
import LinearAlgebra

/// How the two factors are computed.
public enum FactorizationMethod: String, Codable, Sendable, CaseIterable {
  /// Truncated SVD (sgesdd, sgesvd when it fails to converge): the optimum.
  case svd
  /// Randomized SVD (Halko, Martinsson, Tropp 2011), seeded.
  case rsvd
  /// Column-pivoted QR of W^T (sgeqp3), i.e. a row-pivoted LQ of W: cheaper, not optimal.
  case lq
  /// SVD-LLM (Wang et al. 2024, arXiv 2403.07378): truncated SVD of W·S with S the Cholesky
  /// factor of the inputs' second moment XᵀX, then B·S⁻¹ (layer by layer from calibration data).
  case svdLLM = "svd-llm"
  /// ASVD (Yuan et al. 2023, arXiv 2312.05821): truncated SVD of W·diag(s) with
  /// s_j = (mean |x_j|)^0.5 gathered layer by layer from calibration data, then B·diag(1/s).
  case asvd

  /// Whether the method needs calibration data.
  public var isCalibrated: Bool { self == .svdLLM || self == .asvd }
}

/// How the rank of each factorized weight is chosen.
public enum RankRule: Codable, Sendable, Equatable {
  /// A fixed rank k.
  case rank(Int)
  /// The smallest k keeping a fraction e of the squared singular values.
  case energy(Double)
  /// The smallest k with relative Frobenius error at most eps (from the singular values).
  case maxError(Double)
  /// Keep a fraction r of the weight's parameters: k = floor(r x out x in / (out + in)).
  case ratio(Double)
  /// One budget of factor parameters for the whole selection, spent where it removes
  /// the most squared error per parameter.
  case budget(Int)
  /// The same, as a fraction of the selected weights' parameters.
  case modelRatio(Double)

  enum CodingKeys: String, CodingKey, CaseIterable {
    case rank, energy
    case maxError = "max_error"
    case ratio, budget
    case modelRatio = "model_ratio"
  }

  /// One key, as in a recipe: {"rank": 64}, {"energy": 0.9}, {"max_error": 0.1}, {"ratio": 0.5}.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    var rules: [RankRule] = []
    for key in CodingKeys.allCases where c.contains(key) {
      switch key {
      case .rank: rules.append(.rank(try c.decode(Int.self, forKey: .rank)))
      case .energy: rules.append(.energy(try c.decode(Double.self, forKey: .energy)))
      case .maxError: rules.append(.maxError(try c.decode(Double.self, forKey: .maxError)))
      case .ratio: rules.append(.ratio(try c.decode(Double.self, forKey: .ratio)))
      case .budget: rules.append(.budget(try c.decode(Int.self, forKey: .budget)))
      case .modelRatio: rules.append(.modelRatio(try c.decode(Double.self, forKey: .modelRatio)))
      }
    }
    guard rules.count == 1 else {
      let keys = CodingKeys.allCases.map(\.stringValue).joined(separator: ", ")
      throw DecodingError.dataCorrupted(
        .init(
          codingPath: c.codingPath, debugDescription: "give exactly one rank rule of \(keys) (\(rules.count) given)"))
    }
    self = rules[0]
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    switch self {
    case .rank(let k): try c.encode(k, forKey: .rank)
    case .energy(let e): try c.encode(e, forKey: .energy)
    case .maxError(let e): try c.encode(e, forKey: .maxError)
    case .ratio(let r): try c.encode(r, forKey: .ratio)
    case .budget(let p): try c.encode(p, forKey: .budget)
    case .modelRatio(let r): try c.encode(r, forKey: .modelRatio)
    }
  }
}

/// Replaces selected weights W (out x in) by two factors A (out x k) and B (k x in), written
/// as `<module>.weight_a` and `<module>.weight_b` in the weight's dtype. See
/// docs/algorithms.md#factorize.
public struct FactorizePass: CompressionPass {
  /// The checkpoint's model adapter, from `prepared(for:)`.
  var model: any ModelAdapter = ModelAdapters.generic
  public static let identifier = "factorize"
  /// rsvd's extra random columns by default (Halko et al.'s usual 10).
  public static let defaultOversampling = 10
  /// rsvd's power iterations by default: 4 (scikit-learn's `randomized_svd` uses 4 or 7)
  /// keep it within 1 % of the optimum on MiniLM's weights at ranks 32 to 128, where 2 were
  /// 1.8 % above it at rank 64 (issue 12, docs/algorithms.md#factorize).
  public static let defaultPowerIterations = 4
  public static let summary = "low-rank factorization W ~ A B by truncated, randomized SVD or pivoted LQ"
  public let configuration: Configuration
  let ignoreRules: [IgnoreRule]

  public init(configuration: Configuration) throws(SwiftCompressError) {
    switch configuration.rank {
    case .rank(let k):
      guard k >= 1 else { throw .invalidOption(option: "--rank", reason: "\(k) must be at least 1") }
    case .energy(let e):
      guard e > 0, e <= 1 else { throw .invalidOption(option: "--energy", reason: "\(e) is outside (0, 1]") }
    case .maxError(let e):
      guard e > 0, e <= 1 else { throw .invalidOption(option: "--max-error", reason: "\(e) is outside (0, 1]") }
    case .ratio(let r):
      guard r > 0, r <= 1 else { throw .invalidOption(option: "--ratio", reason: "\(r) is outside (0, 1]") }
    case .budget(let p):
      guard p > 0 else { throw .invalidOption(option: "--budget", reason: "\(p) parameters must be positive") }
    case .modelRatio(let r):
      guard r > 0, r <= 1 else { throw .invalidOption(option: "--model-ratio", reason: "\(r) is outside (0, 1]") }
    }
    guard configuration.oversampling >= 0, configuration.powerIterations >= 0 else {
      throw .invalidOption(option: "--oversampling", reason: "oversampling and power iterations must be non-negative")
    }
    self.configuration = configuration
    ignoreRules = try configuration.ignore.map { (entry) throws(SwiftCompressError) in try IgnoreRule(entry) }
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    let module: String
    switch try LinearWeights.select(tensor, ignoring: ignoreRules, verb: "factorized", model: model) {
    case .keep(let reason): return .keep(reason: reason)
    case .module(let name): module = name
    }
    let (rows, columns) = (tensor.shape[0], tensor.shape[1])
    if case .rank(let k) = configuration.rank, k > min(rows, columns) {
      throw .invalidTensor(
        name: tensor.name,
        reason: "--rank \(k) is above min(out, in) = \(min(rows, columns)) for its shape \(tensor.shape)")
    }
    // Ranks from singular values or a budget were chosen in `prepared(for:)`; a budget
    // leaves out weights whose rank-1 factors would not be smaller than the matrix.
    guard let k = plannedRanks[tensor.name] ?? shapeRank(rows: rows, columns: columns) else {
      return .keep(reason: "rank-1 factors would not be smaller than the matrix")
    }
    if k * (rows + columns) >= rows * columns {
      return .keep(
        reason:
          "rank \(k) factors would hold \(k * (rows + columns)) parameters, not fewer than the \(rows * columns) of the matrix"
      )
    }
    return .transform(
      outputs: [
        PlannedTensor(name: module + ".weight_a", dtype: tensor.dtype, shape: [rows, k]),
        PlannedTensor(name: module + ".weight_b", dtype: tensor.dtype, shape: [k, columns]),
      ], note: "\(configuration.method.rawValue), rank \(k)")
  }

  /// The rank of each selected weight, by tensor name, from `prepared(for:)`.
  var plannedRanks: [String: Int] = [:]

  private func shapeRank(rows: Int, columns: Int) -> Int? {
    switch configuration.rank {
    case .rank(let k): return k
    case .ratio(let r): return max(1, Int((r * Double(rows * columns) / Double(rows + columns)).rounded(.down)))
    case .energy, .maxError, .budget, .modelRatio: return nil
    }
  }

  /// The rank of every selected weight: from its shape (rank, ratio rules) or from its
  /// singular values (energy, max-error: sgesdd without vectors, streaming).
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> FactorizePass {
    if configuration.method.isCalibrated, calibrated == nil, !calibrationPending {
      throw .invalidOption(
        option: "--data",
        reason:
          "\(configuration.method.rawValue) needs calibration data (give --data or --tokens; recipes cannot give it yet)"
      )
    }
    if configuration.method.isCalibrated, shapeRank(rows: 1, columns: 1) == nil {
      throw .invalidOption(
        option: "--rank",
        reason:
          "\(configuration.method.rawValue) takes --rank or --ratio: the other rules need the whitened spectrum, known only while calibrating"
      )
    }
    try StoredLayout.refuseCompressed(checkpoint)
    var pass = self
    pass.model = ModelAdapters.adapter(for: checkpoint)
    if let path = configuration.calibration {
      var modules: [(String, Int)] = []
      for tensor in checkpoint.tensors {
        guard
          case .module(let module) = try LinearWeights.select(
            TensorDescriptor(tensor.info), ignoring: ignoreRules, verb: "factorized")
        else { continue }
        modules.append((module, tensor.info.shape[1]))
      }
      pass.activationScales = try CalibrationStatistics.load(path, modules: modules)
    }
    switch configuration.rank {
    case .budget, .modelRatio: return try pass.withBudget(checkpoint, scales: pass.activationScales)
    default: break
    }
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      guard
        case .module(let module) = try LinearWeights.select(
          descriptor, ignoring: ignoreRules, verb: "factorized", model: pass.model)
      else { continue }
      let (rows, columns) = (descriptor.shape[0], descriptor.shape[1])
      var k = shapeRank(rows: rows, columns: columns)
      if k == nil {
        let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor))
        let sigma = try Self.singularValues(input, scales: pass.activationScales[module])
        checkpoint.release(tensor)
        k = Self.rank(for: configuration.rank, singularValues: sigma)
      }
      guard let k else { continue }
      pass.plannedRanks[tensor.name] = k
      if k <= min(rows, columns), k * (rows + columns) < rows * columns { pass.factorized[module] = k }
    }
    return pass
  }

  /// One parameter budget for every selected weight. Each weight starts at rank 1; then
  /// rank units are added greedily by the squared error they remove per parameter,
  /// sigma_i^2 / (out + in), largest first (ties: tensor order, then index), while the
  /// budget lasts and the factors stay smaller than the matrix. Because each weight's
  /// sigma_i^2 decrease, this takes every weight's singular triplets in order.
  private func withBudget(_ checkpoint: Checkpoint, scales: [String: [Float]]) throws(SwiftCompressError)
    -> FactorizePass
  {
    struct Weight {
      var name: String
      var module: String
      var rows: Int
      var columns: Int
      var squares: [Double]
      var cap: Int
    }
    var weights: [Weight] = []
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      guard
        case .module(let module) = try LinearWeights.select(
          descriptor, ignoring: ignoreRules, verb: "factorized", model: model)
      else { continue }
      let (rows, columns) = (descriptor.shape[0], descriptor.shape[1])
      let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor))
      let sigma = try Self.singularValues(input, scales: scales[module])
      checkpoint.release(tensor)
      let cap = min(min(rows, columns), (rows * columns - 1) / (rows + columns))
      guard cap >= 1 else { continue }
      weights.append(
        Weight(
          name: tensor.name, module: module, rows: rows, columns: columns,
          squares: sigma.map { Double($0) * Double($0) }, cap: cap))
    }
    let parameters = weights.reduce(0) { $0 + $1.rows * $1.columns }
    let budget: Int
    switch configuration.rank {
    case .budget(let p): budget = p
    case .modelRatio(let r): budget = Int((r * Double(parameters)).rounded(.down))
    default: budget = 0
    }
    guard budget <= parameters else {
      throw .invalidOption(
        option: "--budget",
        reason: "\(budget) parameters is more than the \(parameters) of the \(weights.count) selected weights")
    }
    let minimum = weights.reduce(0) { $0 + $1.rows + $1.columns }
    guard budget >= minimum else {
      throw .invalidOption(
        option: "--budget",
        reason:
          "\(budget) parameters cannot give every one of the \(weights.count) selected weights rank 1 (\(minimum) needed); raise it or --ignore some"
      )
    }
    var ranks = [Int](repeating: 1, count: weights.count)
    var spent = minimum
    var candidates: [(gain: Double, weight: Int, index: Int)] = []
    for (w, weight) in weights.enumerated() {
      for i in 1..<weight.cap where i < weight.squares.count {
        candidates.append((weight.squares[i] / Double(weight.rows + weight.columns), w, i))
      }
    }
    candidates.sort { $0.gain != $1.gain ? $0.gain > $1.gain : ($0.weight, $0.index) < ($1.weight, $1.index) }
    for candidate in candidates {
      let weight = weights[candidate.weight]
      let cost = weight.rows + weight.columns
      // Triplets of one weight are taken in order (their gains decrease).
      guard candidate.index == ranks[candidate.weight], spent + cost <= budget else { continue }
      ranks[candidate.weight] += 1
      spent += cost
    }
    var pass = self
    for (w, weight) in weights.enumerated() {
      pass.plannedRanks[weight.name] = ranks[w]
      pass.factorized[weight.module] = ranks[w]
    }
    return pass
  }

  /// Activation norms by module, with --calibration.
  var activationScales: [String: [Float]] = [:]

  /// Modules that will be factorized, with their ranks (for config.json).
  var factorized: [String: Int] = [:]

  /// config.json records the factorized modules and their ranks, which `decompress`
  /// and loaders need to rebuild each weight as weight_a x weight_b.
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    let modules = factorized.keys.sorted().map { JSONMember($0, .number(String(factorized[$0]!))) }
    let block: JSONValue = .object([
      JSONMember("format", .string("low-rank")),
      JSONMember("method", .string(configuration.method.rawValue)),
      JSONMember("modules", .object(modules)),
      JSONMember("product", .string("weight = weight_a @ weight_b")),
    ])
    guard let edited = config.setting(Self.configKey, to: block) else { return nil }
    return JSONText.pretty(edited)
  }

  /// Every output file's `__metadata__` records the same: the factorized modules and ranks
  /// as a JSON object string (safetensors metadata values are strings).
  public var outputMetadata: [String: String] {
    guard !factorized.isEmpty else { return [:] }
    let modules = factorized.keys.sorted().map { "\"\($0)\":\(factorized[$0]!)" }.joined(separator: ",")
    return [Self.configKey: "{\"method\":\"\(configuration.method.rawValue)\",\"modules\":{\(modules)}}"]
  }

  /// Only the modules whose weight is transformed (after --include/--exclude and recipe
  /// targets) are recorded.
  public func planned(transforming tensors: [TensorDescriptor]) -> FactorizePass {
    var pass = self
    let modules = Set(tensors.compactMap { LinearWeights.module(of: $0.name) })
    pass.factorized = factorized.filter { modules.contains($0.key) }
    return pass
  }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] {
    IgnoreRule.unmatched(ignoreRules, in: checkpoint)
  }

  /// The config.json key of the factorization record.
  public static let configKey = LowRankRecord.configKey

  /// The smallest rank meeting an energy or error rule, from singular values.
  static func rank(for rule: RankRule, singularValues sigma: [Float]) -> Int {
    let squares = sigma.map { Double($0) * Double($0) }
    let total = squares.reduce(0, +)
    guard total > 0 else { return 1 }
    var kept = 0.0
    for (i, s) in squares.enumerated() {
      kept += s
      switch rule {
      case .energy(let e): if kept >= e * total - 1e-12 * total { return i + 1 }
      case .maxError(let eps): if ((total - kept) / total).squareRoot() <= eps { return i + 1 }
      case .rank, .ratio, .budget, .modelRatio: return i + 1
      }
    }
    return max(1, sigma.count)
  }

  /// W^T (in x out), with W's columns scaled by `scales` when given (activation-aware).
  static func matrix(_ input: TensorInput, scales: [Float]? = nil) throws(SwiftCompressError) -> Matrix {
    var values = input.floats()
    if let scales {
      let columns = input.descriptor.shape[1]
      for i in values.indices { values[i] *= scales[i % columns] }
    }
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      let columns = input.descriptor.shape[1]
      throw .invalidTensor(
        name: input.descriptor.name,
        reason:
          "element [\(bad / columns), \(bad % columns)] is \(values[bad]); factorization needs finite weights\(nonFiniteAdvice)"
      )
    }
    // The row-major bytes of W read column-major are W^T (in x out): no copy.
    do {
      return try Matrix.transposeOfRowMajor(values, rows: input.descriptor.shape[0], columns: input.descriptor.shape[1])
    } catch {
      throw .invalidTensor(name: input.descriptor.name, reason: error.localizedDescription)
    }
  }

  static func singularValues(_ input: TensorInput, scales: [Float]? = nil) throws(SwiftCompressError) -> [Float] {
    let wt = try matrix(input, scales: scales)
    do {
      return try LinearAlgebra.singularValues(wt)
    } catch {
      throw .invalidTensor(name: input.descriptor.name, reason: "LAPACK failed: \(error.localizedDescription)")
    }
  }

  /// The layer-by-layer results of svd-llm and asvd (`FactorizeMethod`).
  public var calibrated: CalibratedOutputs?
  /// Set by a command that will calibrate before running (and for its dry runs).
  public var calibrationPending = false

  public var warnings: [String] { calibrated?.summary?.warnings ?? [] }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    if configuration.method.isCalibrated {
      guard let calibrated else {
        throw .passBrokePlan(
          pass: Self.identifier, tensor: input.descriptor.name,
          reason: "\(configuration.method.rawValue) computed no factors for it (it needs calibration data)")
      }
      // Else a module outside the layers the calibration runs through: plain SVD (the run warned).
      if let stored = try calibrated.result(for: input.descriptor.name) { return stored }
    }
    return try factorize(input, outputs: outputs)
  }

  /// Factors of `input` by svd, rsvd or lq (scaled by `activationScales`, or whitened by
  /// `whitening`, the lower Cholesky factor of XᵀX, when given).
  func factorize(_ input: TensorInput, outputs: [PlannedTensor], whitening: Matrix? = nil) throws(SwiftCompressError)
    -> TransformResult
  {
    let name = input.descriptor.name
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    let k = outputs[0].shape[1]
    let module = String(name.dropLast(".weight".count))
    let scales = activationScales[module]
    var wt = try Self.matrix(input, scales: scales)  // in x out (W diag(s) with --calibration)
    if let whitening {
      // (W S)ᵀ = Sᵀ Wᵀ.
      do { wt = try gemm(whitening, wt, transposeA: true) } catch {
        throw .invalidTensor(name: name, reason: "BLAS failed: \(error.localizedDescription)")
      }
    }
    var factors: (a: [Float], b: [Float])
    do {
      switch configuration.method {
      case .svd, .svdLLM, .asvd:
        let t = try svd(wt).truncated(rank: k)
        factors = Factorization.svdFactors(u: t.u, singularValues: t.singularValues, vt: t.vt, rows: rows)
      case .rsvd:
        let t = try randomizedSVD(
          wt, rank: k, oversampling: configuration.oversampling, powerIterations: configuration.powerIterations,
          seed: configuration.seed ^ RandomCriterion.fnv1a(name))
        factors = Factorization.svdFactors(u: t.u, singularValues: t.singularValues, vt: t.vt, rows: rows)
      case .lq:
        factors = try Factorization.lqFactors(wt, rank: k, rows: rows, columns: columns)
      }
    } catch let error as LinearAlgebraError {
      throw .invalidTensor(name: name, reason: "LAPACK failed: \(error.localizedDescription)")
    } catch {
      throw .invalidTensor(name: name, reason: "\(error)")
    }
    if let whitening {
      // W S ~ A B'  =>  W ~ A (B' S⁻¹).
      do { try solveRightLowerTriangular(&factors.b, rows: k, lower: whitening) } catch {
        throw .invalidTensor(name: name, reason: "BLAS failed: \(error.localizedDescription)")
      }
    }
    if let scales {
      // W diag(s) ~ A B'  =>  W ~ A (B' diag(1/s)); a channel never active (s = 0) gets 0.
      for r in 0..<k {
        for j in 0..<columns { factors.b[r * columns + j] = scales[j] > 0 ? factors.b[r * columns + j] / scales[j] : 0 }
      }
    }
    // Stored in the weight's dtype; the error is measured for the stored factors.
    let aBytes = DenseCodec.encode(factors.a, as: outputs[0].dtype)
    let bBytes = DenseCodec.encode(factors.b, as: outputs[1].dtype)
    let a = aBytes.withUnsafeBytes { Float32Conversion.floats($0, dtype: outputs[0].dtype, count: rows * k) }
    let b = bBytes.withUnsafeBytes { Float32Conversion.floats($0, dtype: outputs[1].dtype, count: k * columns) }
    let dense: [Float]
    do {
      dense = try LowRankCodec.product(a: a, b: b, rows: rows, rank: k, columns: columns)
    } catch {
      throw .invalidTensor(name: name, reason: "BLAS failed: \(error.localizedDescription)")
    }
    var result = TransformResult(outputs: [.owned(aBytes), .owned(bBytes)], reconstruction: .dense(dense))
    if configuration.method == .lq && scales == nil {
      // The Eckart-Young optimum at this rank, from the singular values alone.
      let sigma = try Self.singularValues(input).map { Double($0) * Double($0) }
      let total = sigma.reduce(0, +)
      result.optimalError = total > 0 ? (sigma.dropFirst(k).reduce(0, +) / total).squareRoot() : 0
    }
    return result
  }

}

extension FactorizePass {
  /// weight_a x weight_b, each factor as later stages left it (quantized factors decoded).
  public func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError)
    -> [Float]
  {
    let a = try outputs.dense(0)
    let b = try outputs.dense(1)
    do {
      return try LowRankCodec.product(
        a: a, b: b, rows: input.shape[0], rank: outputs.planned[0].shape[1], columns: input.shape[1])
    } catch {
      throw .invalidTensor(name: input.name, reason: "BLAS failed: \(error.localizedDescription)")
    }
  }
}
