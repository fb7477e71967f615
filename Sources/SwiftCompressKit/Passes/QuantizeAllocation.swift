import CheckpointIO
import Foundation

extension QuantizePass {
  /// Bytes set aside for the safetensors headers and config.json when `--target-size` is
  /// turned into a budget of tensor bits: per output tensor, its name and header entry.
  static func headerAllowance(tensors: Int, names: Int) -> Int { 4096 + tensors * 96 + names }

  /// The modules the pass selects (as `Sensitivity` measures them), with their input channels.
  public func selectedModules(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> [(String, Int)] {
    var modules: [(String, Int)] = []
    let model = ModelAdapters.adapter(for: checkpoint)
    for tensor in checkpoint.tensors {
      guard
        case .module(let module) = try LinearWeights.select(
          TensorDescriptor(tensor.info), ignoring: ignoreRules, verb: "quantized", factors: true, model: model),
        tensor.info.shape.count == 2, !modules.contains(where: { $0.0 == module })
      else { continue }
      modules.append((module, tensor.info.shape[1]))
    }
    return modules
  }

  /// Chooses each selected module's scheme among `configuration.candidates` to minimise the
  /// summed estimated loss (`Sensitivity`) within `configuration.target` (`Allocator`).
  mutating func allocate(_ checkpoint: Checkpoint) throws(SwiftCompressError) {
    guard let target = configuration.target else { return }
    if !configuration.schemeFor.isEmpty {
      throw .invalidOption(
        option: "--scheme-for",
        reason:
          "cannot be combined with --target-bpw or --target-size: the allocation chooses every module's scheme (leave modules out with --ignore)"
      )
    }
    let statistics = try configuration.statistics.map { (path) throws(SwiftCompressError) in
      try Sensitivity.Statistics.load(path, modules: try selectedModules(checkpoint))
    }
    let sensitivity: Sensitivity
    if let measuredSensitivity {
      // Measured beforehand (analyze --json, or the model's loss): it must describe these weights.
      let expected = try Sensitivity.selection(checkpoint, pass: self).map {
        "\($0.0.name) \($0.0.info.dtype.rawValue)\($0.0.info.shape)"
      }
      let given = measuredSensitivity.rows.map { "\($0.tensor) \($0.dtype.rawValue)\($0.shape)" }
      if given != expected {
        throw .invalidCheckpoint(
          path: checkpoint.path,
          reason:
            "is not what the --sensitivity measurements describe: they hold \(Format.count(given.count, "weight")), not the \(Format.count(expected.count, "weight")) this run quantizes with these names, dtypes and shapes (another model or dtype, or another --ignore); run 'swiftcompress analyze' on this input with the same --ignore"
        )
      }
      sensitivity = measuredSensitivity
    } else {
      sensitivity = try Sensitivity.measure(
        checkpoint, pass: self, candidates: configuration.candidates, statistics: statistics)
    }
    let items = sensitivity.items
    let weights = sensitivity.rows.reduce(0) { $0 + $1.elementCount }
    guard weights > 0, !items.isEmpty else {
      throw .invalidCheckpoint(path: checkpoint.path, reason: "has no linear weight to allocate schemes to")
    }
    let range = Allocator.range(items)
    let budget: Double
    let option: String
    let describe: (Double) -> String
    switch target {
    case .bitsPerWeight(let b):
      (budget, option) = (b * Double(weights), "--target-bpw")
      describe = { Format.fixed($0 / Double(weights), 3) + " bits per weight" }
    case .size(let size):
      // Everything but the allocated weights is written as it is (plus headers).
      let selected = Set(sensitivity.rows.map(\.tensor))
      var fixed = 0
      var outputs = 0
      var names = 0
      for tensor in checkpoint.tensors where !selected.contains(tensor.name) {
        fixed += tensor.info.byteCount
        outputs += 1
        names += tensor.name.utf8.count
      }
      for row in sensitivity.rows {
        outputs += 4
        names += 4 * (row.tensor.utf8.count + 16)
      }
      fixed += Self.headerAllowance(tensors: outputs, names: names)
      (budget, option) = (Double(size - fixed) * 8, "--target-size")
      describe = { Format.bytes(Int(($0 / 8).rounded(.up)) + fixed) }
    }
    guard budget >= range.lowerBound - 1e-9 * range.lowerBound, budget <= range.upperBound + 1e-9 * range.upperBound
    else {
      let which = budget < range.lowerBound ? "below the smallest" : "above the largest"
      throw .invalidOption(
        option: option,
        reason:
          "\(target) is \(which) the candidates can reach (\(describe(range.lowerBound)) to \(describe(range.upperBound)) with \(configuration.candidates.map(\.description).joined(separator: ", "))); give a target in that range"
      )
    }
    // Within the tolerance of floating-point sums, a target at an end of the range is that end.
    let solution = try Allocator.allocate(items, budget: min(max(budget, range.lowerBound), range.upperBound))
    for (item, chosen) in zip(items, solution.choices) {
      for module in item.modules { assigned[module] = chosen.choice }
    }
    // The note: the mix, the estimate, its bound, and the best uniform choice within budget.
    // Counted by weight tensor (a factorized module has two) and by parameter.
    var counts: [SchemeChoice: (tensors: Int, weights: Int)] = [:]
    for row in sensitivity.rows {
      let choice = assigned[row.module] ?? .keep
      counts[choice, default: (0, 0)].tensors += 1
      counts[choice, default: (0, 0)].weights += row.elementCount
    }
    let mix = configuration.candidates.compactMap { choice -> String? in
      guard let count = counts[choice] else { return nil }
      return
        "\(choice) \(Format.count(count.tensors, "weight")) (\(Format.fixed(100 * Double(count.weights) / Double(weights), 1)) % of parameters)"
    }
    var uniform: (SchemeChoice, Double)?
    for choice in configuration.candidates {
      let options = items.compactMap { $0.options.first { $0.choice == choice } }
      guard options.count == items.count, options.reduce(0, { $0 + $1.bits }) <= budget else { continue }
      let loss = options.reduce(0) { $0 + $1.loss }
      if uniform == nil || loss < uniform!.1 { uniform = (choice, loss) }
    }
    let metric =
      sensitivity.measuredMetric.map { "\($0) with only that weight quantized, summed over the weights" }
      ?? (!sensitivity.weighted
        ? "squared weight error"
        : sensitivity.fullHessian
          ? "output error proxy tr(ΔW XᵀX ΔWᵀ) (calibrate --hessians)"
          : "output error proxy Σ ΔW² ||x||² (calibrate's statistics)")
    let gap = solution.loss > 0 ? (solution.loss - solution.lowerBound) / solution.loss : 0
    var note =
      "allocation (\(option) \(target)): \(describe(solution.bits)) over \(Format.count(sensitivity.rows.count, "weight")) (\(Format.count(weights, "parameter"))); \(mix.joined(separator: ", ")); estimated \(metric) \(Format.metric(solution.loss)), within \(Format.fixed(100 * gap, 2)) % of the optimum (LP bound \(Format.metric(solution.lowerBound)))"
    if let (choice, loss) = uniform {
      note += "; best single scheme within the target: \(choice), \(Format.metric(loss))"
    }
    allocationNote = note
  }
}

extension QuantizePass {
  /// The configuration that writes what the allocation chooses without measuring again: the
  /// target replaced by one `scheme_for` rule per module, naming its weight exactly. What a
  /// saved recipe holds when the measurements (`--sensitivity`, the model's loss on `--data`)
  /// are not something a recipe can redo.
  public func spelledOut(for checkpoint: Checkpoint) throws(SwiftCompressError) -> Configuration {
    var pass = self
    pass.model = ModelAdapters.adapter(for: checkpoint)
    try pass.allocate(checkpoint)
    var spelled = configuration
    spelled.target = nil
    spelled.candidates = Configuration.defaultCandidates
    spelled.statistics = nil
    spelled.schemeFor = []
    for (module, _) in try selectedModules(checkpoint) {
      let name = NSRegularExpression.escapedPattern(for: module + ".weight")
      spelled.schemeFor.append(try SchemeRule(pattern: "^\(name)$", choice: pass.assigned[module] ?? .keep))
    }
    return spelled
  }
}
