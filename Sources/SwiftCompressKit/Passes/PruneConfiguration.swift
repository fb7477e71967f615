import CheckpointIO
import Foundation

extension PrunePass {
  /// The prune options, as the command line, a recipe stage and the pass registry's JSON
  /// give them.
  public struct Configuration: Codable, Sendable, Equatable {
    public var method: PruneMethod
    /// Fraction of weights to prune, in [0, 1) (unstructured methods).
    public var sparsity: Double?
    public var scope: PruneScope
    /// N:M pattern (method nm, or magnitude/wanda/random restricted to N:M).
    public var pattern: NMPattern?
    /// Wanda's calibration-statistics file.
    public var calibration: String?
    public var seed: UInt64
    public var sparseFormat: SparseFormat
    /// Modules left dense, as in compressed-tensors' ignore list (exact or re:<regex>).
    public var ignore: [String]
    /// Structured pruning: which units, what fraction of them per layer, and how scored.
    public var structure: StructuredUnit?
    public var ratio: Double?
    public var norm: UnitNorm
    /// Structured pruning: cut the coupled tensors and update config.json.
    public var shrink: Bool
    /// SparseGPT: λ = dampening x mean(diag H) added to H's diagonal.
    public var dampening: Double = ErrorFeedback.defaultDampening
    /// SparseGPT: columns per mask block and lazy batch update.
    public var blockSize: Int = ErrorFeedback.defaultBlockSize
    /// SparseGPT and Wanda from calibration data: the exact least-squares values of the weights
    /// the mask keeps (`Refit`), or none (the method's own values, llm-compressor's).
    public var refit: Refit.Mode = defaultRefit

    // The value of each option left out.
    /// Wanda compares weights within a row (its paper's comparison group); the others
    /// within the tensor.
    public static func defaultScope(for method: PruneMethod) -> PruneScope { method == .wanda ? .row : .tensor }
    public static let defaultSeed: UInt64 = 0
    public static let defaultSparseFormat = SparseFormat.dense
    public static let defaultIgnore = ["lm_head"]
    public static let defaultNorm = UnitNorm.l2
    public static let defaultShrink = false
    public static let defaultRefit = Refit.Mode.none

    public init(
      method: PruneMethod, sparsity: Double? = nil, scope: PruneScope? = nil, pattern: NMPattern? = nil,
      calibration: String? = nil, seed: UInt64 = defaultSeed, sparseFormat: SparseFormat = defaultSparseFormat,
      ignore: [String] = defaultIgnore, structure: StructuredUnit? = nil, ratio: Double? = nil,
      norm: UnitNorm = defaultNorm, shrink: Bool = defaultShrink
    ) {
      self.method = method
      self.sparsity = sparsity
      self.scope = scope ?? Self.defaultScope(for: method)
      self.pattern = pattern
      self.calibration = calibration
      self.seed = seed
      self.sparseFormat = sparseFormat
      self.ignore = ignore
      self.structure = structure
      self.ratio = ratio
      self.norm = norm
      self.shrink = shrink
    }

    /// Every key but `method` may be left out (recipes, the pass registry).
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      let method = try c.decode(PruneMethod.self, forKey: .method)
      let pattern = try c.decodeIfPresent(String.self, forKey: .pattern).map { text in
        guard let pattern = NMPattern(text) else {
          throw DecodingError.dataCorruptedError(
            forKey: .pattern, in: c, debugDescription: "must be N:M, such as '2:4', not '\(text)'")
        }
        return pattern
      }
      self.init(
        method: method, sparsity: try c.decodeIfPresent(Double.self, forKey: .sparsity),
        scope: try c.decodeIfPresent(PruneScope.self, forKey: .scope), pattern: pattern,
        calibration: try c.decodeIfPresent(String.self, forKey: .calibration),
        seed: try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? Self.defaultSeed,
        sparseFormat: try c.decodeIfPresent(SparseFormat.self, forKey: .sparseFormat) ?? Self.defaultSparseFormat,
        ignore: try c.decodeIfPresent([String].self, forKey: .ignore) ?? Self.defaultIgnore,
        structure: try c.decodeIfPresent(StructuredUnit.self, forKey: .structure),
        ratio: try c.decodeIfPresent(Double.self, forKey: .ratio),
        norm: try c.decodeIfPresent(UnitNorm.self, forKey: .norm) ?? Self.defaultNorm,
        shrink: try c.decodeIfPresent(Bool.self, forKey: .shrink) ?? Self.defaultShrink)
      dampening = try c.decodeIfPresent(Double.self, forKey: .dampening) ?? ErrorFeedback.defaultDampening
      blockSize = try c.decodeIfPresent(Int.self, forKey: .blockSize) ?? ErrorFeedback.defaultBlockSize
      refit = try c.decodeIfPresent(Refit.Mode.self, forKey: .refit) ?? Self.defaultRefit
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(method, forKey: .method)
      try c.encodeIfPresent(sparsity, forKey: .sparsity)
      try c.encode(scope, forKey: .scope)
      try c.encodeIfPresent(pattern?.description, forKey: .pattern)
      try c.encodeIfPresent(calibration, forKey: .calibration)
      try c.encode(seed, forKey: .seed)
      try c.encode(sparseFormat, forKey: .sparseFormat)
      try c.encode(ignore, forKey: .ignore)
      try c.encodeIfPresent(structure, forKey: .structure)
      try c.encodeIfPresent(ratio, forKey: .ratio)
      try c.encode(norm, forKey: .norm)
      try c.encode(shrink, forKey: .shrink)
      if method == .sparsegpt {
        try c.encode(dampening, forKey: .dampening)
        try c.encode(blockSize, forKey: .blockSize)
      }
      if method == .sparsegpt || (method == .wanda && calibration == nil) { try c.encode(refit, forKey: .refit) }
    }

    enum CodingKeys: String, CodingKey {
      case method, sparsity, scope, pattern, calibration, seed, ignore, structure, ratio, norm, shrink, dampening, refit
      case sparseFormat = "sparse_format"
      case blockSize = "block_size"
    }
  }
}

extension PrunePass.Configuration: RecipeStageConfiguration {
  public static let stageKind = StageKind.prune
  public static let optionKeys = [
    "method", "sparsity", "scope", "pattern", "calibration", "seed", "sparse_format", "structure", "ratio", "norm",
    "shrink", "ignore", "dampening", "block_size", "refit",
  ]
  public static let overrideKeys = ["method", "sparsity", "pattern", "seed"]

  /// Recipes give no calibration data: the methods that need it are refused here.
  public func pass() throws(SwiftCompressError) -> any CompressionPass {
    let pass = try PrunePass(configuration: self)
    if pass.needsCalibrationData {
      throw .invalidOption(
        option: "--calibration",
        reason:
          method == .wanda
          ? "wanda in a recipe needs a calibration-statistics file (calibration: FILE from 'swiftcompress calibrate')"
          : "\(method.rawValue) needs calibration data, which recipes cannot give yet; use 'swiftcompress prune --method \(method.rawValue) --data FILE'"
      )
    }
    return pass
  }
}

extension PrunePass {
  public var recipeStage: (any RecipeStageConfiguration)? { configuration }

  public var wholeModelRequirement: String? {
    if configuration.method == .structured { return "removes units chosen over coupled tensors" }
    if configuration.scope == .global && configuration.pattern == nil { return "uses one global threshold" }
    return nil
  }

  public var allTensorsRequirement: String? {
    guard configuration.method == .structured else { return nil }
    return
      "removes units across coupled tensors (weights and their biases), which must all be offered to it: choose what it prunes with 'structure' and 'ignore', not targets or exclude"
  }

  public var chainingRefusal: String? {
    guard configuration.sparseFormat == .bitmask else { return nil }
    return "stores a bitmask, which later stages cannot take: use sparse_format: dense when other stages follow"
  }
}
