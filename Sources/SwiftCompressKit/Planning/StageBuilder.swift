import CheckpointIO
import Foundation

/// Turns a stage's recipe options into a pass, and a pass back into the options that
/// rebuild it (the effective recipe written with every output).
enum StageBuilder {
  /// The option keys of each stage kind (besides targets, exclude and overrides).
  static func optionKeys(_ kind: StageKind) -> [String] {
    switch kind {
    case .quantize: ["scheme", "group_size", "scale_search", "ignore", "residual_rank", "residual_iterations"]
    case .prune:
      [
        "method", "sparsity", "scope", "pattern", "calibration", "seed", "sparse_format", "structure", "ratio", "norm",
        "shrink", "ignore",
      ]
    case .factorize:
      [
        "method", "rank", "energy", "max_error", "ratio", "budget", "model_ratio", "calibration", "oversampling",
        "power_iterations", "seed", "ignore",
      ]
    }
  }

  /// The keys an override may change: those that do not change what the whole model's
  /// config.json says (a quantization scheme, a sparse format) or need whole-model
  /// statistics (global pruning, structured pruning, rank budgets).
  static func overrideKeys(_ kind: StageKind) -> [String] {
    switch kind {
    case .quantize: ["scale_search"]
    case .prune: ["method", "sparsity", "pattern", "seed"]
    case .factorize: ["method", "rank", "energy", "max_error", "ratio", "oversampling", "power_iterations", "seed"]
    }
  }

  /// Reads typed values out of a stage's options.
  struct Reader {
    let file: String
    let stageLine: Int
    let options: [String: RecipeOption]

    func fail(_ key: String, _ reason: String) -> SwiftCompressError {
      .invalidRecipe(file: file, line: options[key]?.line ?? stageLine, key: key, reason: reason)
    }

    func scalar(_ key: String) throws(SwiftCompressError) -> String? {
      guard let option = options[key] else { return nil }
      guard case .scalar(let s) = option.value else { throw fail(key, "must be a single value, not a list") }
      return s
    }

    func double(_ key: String) throws(SwiftCompressError) -> Double? {
      guard let s = try scalar(key) else { return nil }
      guard let v = Double(s), v.isFinite else { throw fail(key, "must be a number, not '\(s)'") }
      return v
    }

    func int(_ key: String) throws(SwiftCompressError) -> Int? {
      guard let s = try scalar(key) else { return nil }
      guard let v = Int(s) else { throw fail(key, "must be a whole number, not '\(s)'") }
      return v
    }

    func uint64(_ key: String) throws(SwiftCompressError) -> UInt64? {
      guard let s = try scalar(key) else { return nil }
      guard let v = UInt64(s) else { throw fail(key, "must be a whole number >= 0, not '\(s)'") }
      return v
    }

    func bool(_ key: String) throws(SwiftCompressError) -> Bool? {
      guard let s = try scalar(key) else { return nil }
      guard let v = Bool(s) else { throw fail(key, "must be true or false, not '\(s)'") }
      return v
    }

    func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(SwiftCompressError) -> E?
    where E.RawValue == String {
      guard let s = try scalar(key) else { return nil }
      guard let v = E(rawValue: s) else {
        throw fail(key, "'\(s)' is not allowed; allowed: \(E.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      return v
    }

    func strings(_ key: String) -> [String]? {
      guard let option = options[key] else { return nil }
      switch option.value {
      case .scalar(let s): return [s]
      case .list(let l): return l
      }
    }
  }

  /// The pass a stage's options describe. Errors name the file, line and key.
  static func makePass(
    kind: StageKind, options: [String: RecipeOption], file: String, stageLine: Int
  ) throws(SwiftCompressError) -> any CompressionPass {
    let r = Reader(file: file, stageLine: stageLine, options: options)
    do throws(SwiftCompressError) {
      switch kind {
      case .quantize:
        guard let name = try r.scalar("scheme") else {
          throw r.fail(
            "scheme", "is required; allowed: \(QuantizationScheme.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let scheme = QuantizationScheme(name: name) else {
          throw r.fail(
            "scheme",
            "'\(name)' is not allowed; allowed: \(QuantizationScheme.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let quantize = QuantizePass.Configuration(
          scheme: scheme, groupSize: try r.int("group_size") ?? 128, ignore: r.strings("ignore") ?? ["lm_head"],
          scaleSearch: try r.choice("scale_search", ScaleSearch.self) ?? .none)
        if let rank = try r.int("residual_rank") {
          return try LowRankResidualPass(
            configuration: .init(
              quantize: quantize, rank: rank,
              iterations: try r.int("residual_iterations") ?? LowRankResidualPass.defaultIterations))
        }
        if options["residual_iterations"] != nil {
          throw r.fail("residual_iterations", "needs residual_rank (the rank of the low-rank part)")
        }
        return try QuantizePass(configuration: quantize)
      case .prune:
        guard let method = try r.choice("method", PruneMethod.self) else {
          throw r.fail(
            "method", "is required; allowed: \(PruneMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var pattern: NMPattern?
        if let text = try r.scalar("pattern") {
          guard let p = NMPattern(text) else { throw r.fail("pattern", "must be N:M, such as '2:4', not '\(text)'") }
          pattern = p
        }
        return try PrunePass(
          configuration: .init(
            method: method, sparsity: try r.double("sparsity"), scope: try r.choice("scope", PruneScope.self),
            pattern: pattern, calibration: try r.scalar("calibration"), seed: try r.uint64("seed") ?? 0,
            sparseFormat: try r.choice("sparse_format", SparseFormat.self) ?? .dense,
            ignore: r.strings("ignore") ?? ["lm_head"], structure: try r.choice("structure", StructuredUnit.self),
            ratio: try r.double("ratio"), norm: try r.choice("norm", UnitNorm.self) ?? .l2,
            shrink: try r.bool("shrink") ?? false))
      case .factorize:
        var rules: [RankRule] = []
        if let v = try r.int("rank") { rules.append(.rank(v)) }
        if let v = try r.double("energy") { rules.append(.energy(v)) }
        if let v = try r.double("max_error") { rules.append(.maxError(v)) }
        if let v = try r.double("ratio") { rules.append(.ratio(v)) }
        if let v = try r.int("budget") { rules.append(.budget(v)) }
        if let v = try r.double("model_ratio") { rules.append(.modelRatio(v)) }
        guard rules.count == 1 else {
          throw r.fail(
            "rank",
            "give exactly one rank rule of rank, energy, max_error, ratio, budget, model_ratio (\(rules.count) given)")
        }
        return try FactorizePass(
          configuration: .init(
            method: try r.choice("method", FactorizationMethod.self) ?? .svd, rank: rules[0],
            ignore: r.strings("ignore") ?? ["lm_head"],
            oversampling: try r.int("oversampling") ?? FactorizePass.defaultOversampling,
            powerIterations: try r.int("power_iterations") ?? FactorizePass.defaultPowerIterations,
            seed: try r.uint64("seed") ?? 0,
            calibration: try r.scalar("calibration")))
      }
    } catch {
      switch error {
      case .invalidRecipe: throw error
      case .invalidOption(let option, let reason):
        // The pass names its command-line option; a recipe names the key.
        let key = option.hasPrefix("--") ? String(option.dropFirst(2)).replacingOccurrences(of: "-", with: "_") : option
        let known = options[key] != nil
        throw .invalidRecipe(
          file: file, line: options[key]?.line ?? stageLine, key: known ? key : kind.rawValue,
          reason: known ? reason : "\(option): \(reason)")
      default:
        throw .invalidRecipe(
          file: file, line: stageLine, key: kind.rawValue, reason: error.errorDescription ?? "\(error)")
      }
    }
  }

  /// Every option of `pass` with its value (defaults included), so the stage can be
  /// rebuilt exactly.
  static func effectiveOptions(of pass: any CompressionPass) -> [String: RecipeOption] {
    var o: [String: RecipeValue] = [:]
    func number(_ v: Double) -> RecipeValue { .scalar(YAMLText.number(v)) }
    if let q = pass as? QuantizePass {
      o = quantizeOptions(q.configuration)
    } else if let r = pass as? LowRankResidualPass {
      o = quantizeOptions(r.configuration.quantize)
      o["residual_rank"] = .scalar("\(r.configuration.rank)")
      o["residual_iterations"] = .scalar("\(r.configuration.iterations)")
    } else if let p = pass as? PrunePass {
      let c = p.configuration
      o["method"] = .scalar(c.method.rawValue)
      o["scope"] = .scalar(c.scope.rawValue)
      o["seed"] = .scalar("\(c.seed)")
      o["sparse_format"] = .scalar(c.sparseFormat.rawValue)
      o["ignore"] = .list(c.ignore)
      o["norm"] = .scalar(c.norm.rawValue)
      o["shrink"] = .scalar("\(c.shrink)")
      if let v = c.sparsity { o["sparsity"] = number(v) }
      if let v = c.pattern { o["pattern"] = .scalar(v.description) }
      if let v = c.calibration { o["calibration"] = .scalar(v) }
      if let v = c.structure { o["structure"] = .scalar(v.rawValue) }
      if let v = c.ratio { o["ratio"] = number(v) }
    } else if let f = pass as? FactorizePass {
      let c = f.configuration
      o["method"] = .scalar(c.method.rawValue)
      o["ignore"] = .list(c.ignore)
      o["oversampling"] = .scalar("\(c.oversampling)")
      o["power_iterations"] = .scalar("\(c.powerIterations)")
      o["seed"] = .scalar("\(c.seed)")
      if let v = c.calibration { o["calibration"] = .scalar(v) }
      switch c.rank {
      case .rank(let k): o["rank"] = .scalar("\(k)")
      case .energy(let e): o["energy"] = number(e)
      case .maxError(let e): o["max_error"] = number(e)
      case .ratio(let r): o["ratio"] = number(r)
      case .budget(let b): o["budget"] = .scalar("\(b)")
      case .modelRatio(let r): o["model_ratio"] = number(r)
      }
    }
    return o.mapValues { RecipeOption($0) }
  }

  private static func quantizeOptions(_ c: QuantizePass.Configuration) -> [String: RecipeValue] {
    [
      "scheme": .scalar(c.scheme.rawValue), "group_size": .scalar("\(c.groupSize)"), "ignore": .list(c.ignore),
      "scale_search": .scalar(c.scaleSearch.rawValue),
    ]
  }

  /// The kind of stage a pass is, nil for passes recipes do not chain.
  static func kind(of pass: any CompressionPass) -> StageKind? {
    switch pass {
    case is QuantizePass, is LowRankResidualPass: .quantize
    case is PrunePass: .prune
    case is FactorizePass: .factorize
    default: nil
    }
  }
}

extension Recipe {
  /// The one-stage recipe of a single-pass command (quantize, prune, factorize), with
  /// every option: `--include` patterns become the stage's targets.
  public static func singleStage(
    _ pass: any CompressionPass, selection: TensorSelection, gates: QualityGates = QualityGates()
  ) -> Recipe? {
    guard let kind = StageBuilder.kind(of: pass) else { return nil }
    return Recipe(
      file: "command line",
      stages: [
        RecipeStage(
          kind: kind, targets: selection.include.isEmpty ? nil : selection.include, exclude: selection.exclude,
          options: StageBuilder.effectiveOptions(of: pass))
      ], gates: gates)
  }
}
