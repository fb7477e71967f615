import CheckpointIO
import Foundation

/// The units structured pruning removes.
public enum StructuredUnit: String, Codable, Sendable, CaseIterable {
  /// MLP neurons: Llama gate/up rows with the matching down_proj columns; BERT
  /// intermediate rows (and bias) with the matching output columns.
  case mlp
  /// Attention heads: query/key/value rows and output-projection columns per head; with
  /// grouped key-value heads, a key-value head together with the query heads it serves.
  case heads
  /// Output channels (rows) of each selected weight, each weight on its own.
  case rows
  /// Input channels (columns) of each selected weight, each weight on its own.
  case columns
}

/// What one structured unit is, as counted in the report.
public enum PrunedUnit: String, Codable, Sendable, CaseIterable {
  /// One MLP neuron (`--structure mlp`).
  case mlpNeuron = "mlp_neuron"
  /// One attention head with its key and value (`--structure heads` without grouped
  /// key-value heads, and BERT).
  case attentionHead = "attention_head"
  /// One key-value head with the query heads it serves (`--structure heads` with grouped
  /// key-value heads); the report also counts those attention heads.
  case keyValueHeadGroup = "key_value_head_group"
  /// One output channel of one weight (`--structure rows`).
  case row
  /// One input channel of one weight (`--structure columns`).
  case column

  /// The plural, as the summary and the notes print it: "MLP neurons".
  public var plural: String {
    switch self {
    case .mlpNeuron: "MLP neurons"
    case .attentionHead: "attention heads"
    case .keyValueHeadGroup: "key-value head groups"
    case .row: "rows"
    case .column: "columns"
    }
  }
}

/// Units removed of the units there: in one coupled group, one layer, or the model. A
/// unit is counted once however many tensors it spans.
public struct UnitCount: Sendable, Equatable {
  public var removed = 0
  public var total = 0
  /// Key-value head groups only: the attention (query) heads in them.
  public var headsRemoved: Int? = nil
  public var headsTotal: Int? = nil

  public init(removed: Int = 0, total: Int = 0, headsRemoved: Int? = nil, headsTotal: Int? = nil) {
    self.removed = removed
    self.total = total
    self.headsRemoved = headsRemoved
    self.headsTotal = headsTotal
  }

  static func + (a: UnitCount, b: UnitCount) -> UnitCount {
    func add(_ x: Int?, _ y: Int?) -> Int? { x == nil && y == nil ? nil : (x ?? 0) + (y ?? 0) }
    return UnitCount(
      removed: a.removed + b.removed, total: a.total + b.total, headsRemoved: add(a.headsRemoved, b.headsRemoved),
      headsTotal: add(a.headsTotal, b.headsTotal))
  }
}

/// How a unit is scored: the L1 or L2 norm of all its weights across the coupled tensors.
public enum UnitNorm: String, Codable, Sendable, CaseIterable {
  case l1, l2
}

/// Structured pruning's decisions, made in `prepared(for:)` from every coupled tensor:
/// per tensor the rows and columns removed (or zeroed), and the config.json changes.
struct StructuredPlan: Sendable, Equatable {
  /// The rows and columns cut from one tensor, and the units of the coupled group it
  /// belongs to (the same count for every tensor of the group).
  struct Cut: Sendable, Equatable {
    var rows: [Int] = []
    var columns: [Int] = []
    /// The coupled group: "model.layers.0.mlp", "model.layers.0.self_attn",
    /// "encoder.layer.0.intermediate", "encoder.layer.0.attention", or the weight itself
    /// for rows and columns.
    var group: String
    var unit: PrunedUnit
    var count: UnitCount
  }

  var cuts: [String: Cut] = [:]
  /// Each coupled group's units, in the order the groups were chosen.
  var groups: [(name: String, count: UnitCount)] = []
  /// The units of the whole model: each group counted once.
  var modelCount: UnitCount { groups.reduce(UnitCount()) { $0 + $1.count } }
  /// config.json keys set after --shrink (name, value), in order.
  var configChanges: [(String, Int)] = []
  var warnings: [String] = []

  static func == (a: StructuredPlan, b: StructuredPlan) -> Bool {
    a.cuts == b.cuts && a.configChanges.map(\.0) == b.configChanges.map(\.0)
      && a.configChanges.map(\.1) == b.configChanges.map(\.1) && a.warnings == b.warnings
      && a.groups.map(\.name) == b.groups.map(\.name) && a.groups.map(\.count) == b.groups.map(\.count)
  }

  /// A slice of a tensor that belongs to a unit: rows or columns `range`.
  private struct Member {
    var tensor: String
    var alongRows: Bool
  }

  /// The units are the ones `ModelAdapters.adapter(for:)` describes; each is cut where its
  /// tensors are in the checkpoint, with the sizes read from them.
  init(checkpoint: Checkpoint, pass: PrunePass) throws(SwiftCompressError) {
    let configuration = pass.configuration
    guard let unit = configuration.structure, let ratio = configuration.ratio else { return }
    let adapter = ModelAdapters.adapter(for: checkpoint)
    let names = Set(checkpoint.tensors.map(\.name))
    func ignored(_ module: String) -> Bool { pass.ignoreRules.contains { $0.matches(module) } }
    /// A unit group is left alone when any of its modules is ignored; with --shrink that
    /// would leave config.json's single size wrong for that layer, so it is refused.
    func anyIgnored(_ modules: [String]) throws(SwiftCompressError) -> Bool {
      guard let module = modules.first(where: ignored) else { return false }
      if configuration.shrink {
        throw .invalidOption(
          option: "--ignore",
          reason:
            "'\(module)' is ignored, but --shrink must cut every layer alike (config.json holds one size for all layers); prune it too or drop --shrink"
        )
      }
      return true
    }

    switch unit {
    case .rows, .columns:
      if configuration.shrink {
        throw .invalidOption(
          option: "--shrink",
          reason:
            "cutting the \(unit.rawValue) of one weight alone would break the layer it feeds; shrink with --structure mlp or heads, or prune \(unit.rawValue) without --shrink (zeroed in place)"
        )
      }
      for tensor in checkpoint.tensors {
        let info = tensor.info
        guard info.shape.count == 2, let module = LinearWeights.module(of: tensor.name), !ignored(module),
          !adapter.isEmbedding(tensor.name), [.f32, .bf16, .f16].contains(info.dtype)
        else { continue }
        let units = unit == .rows ? info.shape[0] : info.shape[1]
        let members = [(tensor.name, unit == .rows)]
        let removed = try Self.choose(
          members: members, units: units, unitSize: 1, ratio: ratio, norm: configuration.norm, checkpoint: checkpoint,
          label: module)
        record(
          members, removed: removed, unitSize: 1, group: tensor.name, unit: unit == .rows ? .row : .column,
          count: UnitCount(removed: removed.count, total: units))
      }
    case .mlp:
      var intermediate: Int?
      // Gated MLPs (gate/up/down) first, then the others, each by layer name.
      let mlps = adapter.model.layers.compactMap { layer in layer.mlp.map { (layer: layer.name, unit: $0) } }
        .filter { names.contains($0.unit.inputs[0] + ".weight") }
        .sorted { ($0.unit.gated ? 0 : 1, $0.layer) < ($1.unit.gated ? 0 : 1, $1.layer) }.map(\.unit)
      for mlp in mlps {
        if try anyIgnored(mlp.inputs + [mlp.output]) { continue }
        guard mlp.inputs.dropFirst().allSatisfy({ names.contains($0 + ".weight") }),
          names.contains(mlp.output + ".weight"),
          let units = checkpoint.tensor(named: mlp.inputs[0] + ".weight")?.info.shape.first
        else { continue }
        // Each neuron: a row of every input projection, a column of the output projection,
        // an element of the input projections' biases.
        var members = mlp.inputs.map { ($0 + ".weight", true) } + [(mlp.output + ".weight", false)]
        for bias in mlp.inputs.map({ $0 + ".bias" }) where names.contains(bias) { members.append((bias, true)) }
        let removed = try Self.choose(
          members: members, units: units, unitSize: 1, ratio: ratio, norm: configuration.norm, checkpoint: checkpoint,
          label: mlp.name)
        record(
          members, removed: removed, unitSize: 1, group: mlp.name, unit: .mlpNeuron,
          count: UnitCount(removed: removed.count, total: units))
        intermediate = units - removed.count
      }
      guard let intermediate else {
        throw .invalidCheckpoint(
          path: checkpoint.path,
          reason:
            "no MLP found (Llama gate_proj/up_proj/down_proj or BERT intermediate/output dense layers); use --structure rows or columns"
        )
      }
      configChanges = [("intermediate_size", intermediate)]
    case .heads:
      let dimensions = adapter.model.dimensions
      guard let heads = dimensions.attentionHeads, heads > 0 else {
        throw .invalidCheckpoint(
          path: checkpoint.path, reason: "head pruning needs a config.json with num_attention_heads next to the weights"
        )
      }
      let kvHeads = dimensions.keyValueHeads ?? heads
      guard kvHeads > 0, heads % kvHeads == 0 else {
        throw .invalidFile(
          path: checkpoint.folder + "/config.json",
          reason: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
      }
      let perGroup = heads / kvHeads
      var kept: Int?
      var headDim = 0
      // Grouped key-value attention (Llama) first, then one key and value per head (BERT),
      // each by layer name.
      let blocks = adapter.model.layers.compactMap { layer in layer.attention.map { (layer: layer.name, unit: $0) } }
        .filter { names.contains($0.unit.query + ".weight") }
        .sorted { ($0.unit.groupedKeyValue ? 0 : 1, $0.layer) < ($1.unit.groupedKeyValue ? 0 : 1, $1.layer) }
        .map(\.unit)
      for attention in blocks where attention.groupedKeyValue {
        let (q, k, v, o) = (attention.query, attention.key, attention.value, attention.output)
        if try anyIgnored([q, k, v, o]) { continue }
        guard let shape = checkpoint.tensor(named: q + ".weight")?.info.shape,
          [k, v, o].allSatisfy({ names.contains($0 + ".weight") })
        else { continue }
        headDim = shape[0] / heads
        guard headDim * heads == shape[0] else {
          throw .invalidTensor(
            name: q + ".weight", reason: "its \(shape[0]) rows are not num_attention_heads \(heads) x a head size")
        }
        // A unit is one key-value group: its key and value rows, and the rows of the
        // query heads it serves with the matching output-projection columns.
        let removed = try Self.chooseHeads(
          attention, heads: heads, kvHeads: kvHeads, headDim: headDim, ratio: ratio, norm: configuration.norm,
          names: names, checkpoint: checkpoint)
        // Every tensor of the layer counts the chosen units, the key-value groups (and,
        // when a group serves several query heads, the attention heads in them).
        let queryUnits = removed.flatMap { g in (g * perGroup)..<((g + 1) * perGroup) }
        let count =
          perGroup == 1
          ? UnitCount(removed: removed.count, total: kvHeads)
          : UnitCount(
            removed: removed.count, total: kvHeads, headsRemoved: queryUnits.count, headsTotal: heads)
        let headUnit: PrunedUnit = perGroup == 1 ? .attentionHead : .keyValueHeadGroup
        let (queryMembers, kvMembers) = Self.headMembers(attention, names: names)
        record(
          queryMembers, removed: queryUnits, unitSize: headDim, group: attention.name, unit: headUnit, count: count,
          newGroup: false)
        record(kvMembers, removed: removed, unitSize: headDim, group: attention.name, unit: headUnit, count: count)
        kept = kvHeads - removed.count
      }
      for attention in blocks where !attention.groupedKeyValue {
        let (q, k, v, o) = (attention.query, attention.key, attention.value, attention.output)
        if try anyIgnored([q, k, v, o]) { continue }
        if configuration.shrink {
          throw .invalidOption(
            option: "--shrink",
            reason:
              "transformers derives BERT's head size from hidden_size / num_attention_heads, so a BERT with fewer heads cannot be described in config.json; prune BERT heads without --shrink (zeroed in place)"
          )
        }
        guard let shape = checkpoint.tensor(named: q + ".weight")?.info.shape, names.contains(o + ".weight")
        else { continue }
        headDim = shape[0] / heads
        var members = [(q + ".weight", true), (o + ".weight", false)]
        for part in [k, v] where names.contains(part + ".weight") { members.append((part + ".weight", true)) }
        for part in [q, k, v] where names.contains(part + ".bias") { members.append((part + ".bias", true)) }
        let removed = try Self.choose(
          members: members, units: heads, unitSize: headDim, ratio: ratio, norm: configuration.norm,
          checkpoint: checkpoint, label: ModelAdapters.module(ofTensor: q))
        record(
          members, removed: removed, unitSize: headDim, group: attention.name, unit: .attentionHead,
          count: UnitCount(removed: removed.count, total: heads))
        kept = nil
      }
      if let kept {
        configChanges = [
          ("num_attention_heads", kept * perGroup), ("num_key_value_heads", kept), ("head_dim", headDim),
        ]
      }
      if cuts.isEmpty {
        throw .invalidCheckpoint(
          path: checkpoint.path,
          reason: "no attention layers found (Llama q/k/v/o_proj or BERT query/key/value with output.dense)")
      }
    }
  }

  /// Records that `removed` slices (each `unitSize` rows or columns) go from `members`,
  /// which belong to `group`, whose units are `count`. The group is counted once, when
  /// `newGroup` (its first members are recorded).
  private mutating func record(
    _ members: [(String, Bool)], removed: [Int], unitSize: Int, group: String, unit: PrunedUnit, count: UnitCount,
    newGroup: Bool = true
  ) {
    let indices = removed.flatMap { u in (u * unitSize)..<((u + 1) * unitSize) }
    for (tensor, alongRows) in members {
      cuts[tensor] =
        alongRows
        ? Cut(rows: indices, group: group, unit: unit, count: count)
        : Cut(columns: indices, group: group, unit: unit, count: count)
    }
    if newGroup { groups.append((group, count)) }
  }

  /// The per-unit sum of |w| (L1) or of w^2 (L2, whose square root orders the same) over
  /// the members; unit u covers rows or columns u * unitSize ..< (u + 1) * unitSize.
  static func unitSums(
    _ members: [(String, Bool)], units: Int, unitSize: Int, norm: UnitNorm, checkpoint: Checkpoint
  ) throws(SwiftCompressError) -> [Double] {
    var sums = [Double](repeating: 0, count: units)
    for (name, alongRows) in members {
      guard let tensor = checkpoint.tensor(named: name) else { continue }
      let info = tensor.info
      guard [.f32, .bf16, .f16].contains(info.dtype) else {
        throw .invalidTensor(name: name, reason: "\(info.dtype.rawValue) weights cannot be pruned")
      }
      let rows = info.shape[0]
      let columns = info.shape.count > 1 ? info.shape[1] : 1
      let extent = alongRows ? rows : columns
      guard extent == units * unitSize else {
        throw .invalidTensor(
          name: name,
          reason:
            "has \(extent) \(alongRows ? "rows" : "columns"), expected \(units) units of \(unitSize) from the tensors it is coupled with"
        )
      }
      // Row by row, so memory stays at one row.
      let bytes = checkpoint.bytes(of: tensor)
      let rowBytes = columns * info.dtype.bitsPerElement / 8
      var row = [Float](repeating: 0, count: columns)
      for r in 0..<rows {
        row.withUnsafeMutableBufferPointer { out in
          Float32Conversion.convert(
            UnsafeRawBufferPointer(rebasing: bytes[(r * rowBytes)..<((r + 1) * rowBytes)]), dtype: info.dtype,
            count: columns, into: out)
        }
        if let bad = row.firstIndex(where: { !$0.isFinite }) {
          checkpoint.release(tensor)
          throw .invalidTensor(
            name: name, reason: "element [\(r), \(bad)] is \(row[bad]); pruning needs finite weights\(nonFiniteAdvice)")
        }
        for c in 0..<columns {
          let v = Double(row[c])
          sums[(alongRows ? r : c) / unitSize] += norm == .l1 ? abs(v) : v * v
        }
      }
      checkpoint.release(tensor)
    }
    return sums
  }

  /// The `floor(ratio x units)` lowest-scoring units (ties: lower index first), sorted.
  static func choose(
    members: [(String, Bool)], units: Int, unitSize: Int, ratio: Double, norm: UnitNorm, checkpoint: Checkpoint,
    label: String
  ) throws(SwiftCompressError) -> [Int] {
    let sums = try unitSums(members, units: units, unitSize: unitSize, norm: norm, checkpoint: checkpoint)
    return try lowest(sums, ratio: ratio, label: label)
  }

  static func lowest(_ sums: [Double], ratio: Double, label: String) throws(SwiftCompressError) -> [Int] {
    let count = Int((ratio * Double(sums.count)).rounded(.down))
    guard count < sums.count else {
      throw .invalidModule(
        name: label, reason: "--ratio \(ratio) would remove all \(sums.count) units; choose a smaller ratio")
    }
    let order = sums.indices.sorted { sums[$0] != sums[$1] ? sums[$0] < sums[$1] : $0 < $1 }
    return order.prefix(count).sorted()
  }

  /// The tensors of a grouped key-value attention block: the query rows and output
  /// columns (per query head), and the key and value rows (per key-value head), biases
  /// included.
  static func headMembers(_ attention: ModelDescription.AttentionHeads, names: Set<String>) -> (
    query: [(String, Bool)], keyValue: [(String, Bool)]
  ) {
    var query = [(attention.query + ".weight", true), (attention.output + ".weight", false)]
    if names.contains(attention.query + ".bias") { query.append((attention.query + ".bias", true)) }
    var keyValue = [(attention.key + ".weight", true), (attention.value + ".weight", true)]
    for bias in [attention.key + ".bias", attention.value + ".bias"] where names.contains(bias) {
      keyValue.append((bias, true))
    }
    return (query, keyValue)
  }

  /// Key-value groups scored over their key/value rows, their query heads' rows and the
  /// matching output-projection columns.
  static func chooseHeads(
    _ attention: ModelDescription.AttentionHeads, heads: Int, kvHeads: Int, headDim: Int, ratio: Double,
    norm: UnitNorm, names: Set<String>, checkpoint: Checkpoint
  ) throws(SwiftCompressError) -> [Int] {
    let perGroup = heads / kvHeads
    let (queryMembers, kvMembers) = headMembers(attention, names: names)
    let query = try unitSums(queryMembers, units: heads, unitSize: headDim, norm: norm, checkpoint: checkpoint)
    let kv = try unitSums(kvMembers, units: kvHeads, unitSize: headDim, norm: norm, checkpoint: checkpoint)
    var groups = kv
    for h in 0..<heads { groups[h / perGroup] += query[h] }
    // The label repeats "self_attn" ("model.layers.0.self_attn.self_attn"), as it always
    // has; correcting it changes an error message.
    return try lowest(groups, ratio: ratio, label: attention.name + ".self_attn")
  }

  /// config.json with the new sizes.
  func editedConfig(_ config: JSONValue) -> String? {
    var edited = config
    for (key, value) in configChanges {
      edited = edited.setting(key, to: .number(String(value))) ?? edited
    }
    return edited == config ? nil : JSONText.pretty(edited)
  }
}

extension PrunePass {
  public var usesDefaultSelection: Bool { configuration.method != .structured }

  /// With `--shrink`: `values` of the cut tensor put back in `tensor`'s shape, zeros
  /// where units were removed (what the cut costs, measured against the input). nil
  /// when the tensor was not cut.
  func expandShrunk(_ values: [Float], of tensor: TensorDescriptor) -> [Float]? {
    guard configuration.method == .structured, configuration.shrink, let cut = structuredPlan?.cuts[tensor.name]
    else { return nil }
    let rows = tensor.shape.first ?? 0
    let columns = tensor.shape.count > 1 ? tensor.shape[1] : 1
    let removedRows = Set(cut.rows)
    let removedColumns = Set(cut.columns)
    let keptColumns = (0..<columns).filter { !removedColumns.contains($0) }
    guard values.count == (rows - removedRows.count) * keptColumns.count else { return nil }
    var dense = [Float](repeating: 0, count: rows * columns)
    var next = 0
    for r in 0..<rows where !removedRows.contains(r) {
      for c in keptColumns {
        dense[r * columns + c] = values[next]
        next += 1
      }
    }
    return dense
  }

  func planStructured(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    guard let structuredPlan, let cut = structuredPlan.cuts[tensor.name] else {
      return .keep(reason: "not part of a pruned unit")
    }
    var shape = tensor.shape
    if configuration.shrink {
      shape[0] -= cut.rows.count
      if shape.count > 1 { shape[1] -= cut.columns.count }
    }
    let verb = configuration.shrink ? "removed" : "zeroed"
    // "96 of 384 MLP neurons of model.layers.0.mlp zeroed (l2 norm); 192 of 768 MLP
    // neurons in the model": the group's units, then the model's, each counted once.
    let whole = [.row, .column].contains(cut.unit) ? "" : " of \(cut.group)"
    return .transform(
      outputs: [PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: shape)],
      note:
        "\(Format.units(cut.count, cut.unit))\(whole) \(verb) (\(configuration.norm.rawValue) norm); \(Format.units(structuredPlan.modelCount, cut.unit)) in the model"
    )
  }

  func transformStructured(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError)
    -> TransformResult
  {
    guard let cut = structuredPlan?.cuts[input.descriptor.name] else {
      throw .passBrokePlan(pass: Self.identifier, tensor: input.descriptor.name, reason: "no structured cut")
    }
    let shape = input.descriptor.shape
    let rows = shape[0]
    let columns = shape.count > 1 ? shape[1] : 1
    let dtype = input.descriptor.dtype
    let elementSize = dtype.bitsPerElement / 8
    let rowBytes = columns * elementSize
    let removedRows = Set(cut.rows)
    let removedColumns = Set(cut.columns)
    // Runs of kept columns, copied as whole byte ranges.
    var keptRuns: [Range<Int>] = []
    var c = 0
    while c < columns {
      if removedColumns.contains(c) {
        c += 1
        continue
      }
      let start = c
      while c < columns && !removedColumns.contains(c) { c += 1 }
      keptRuns.append(start..<c)
    }
    var output: [UInt8] = RowLoops.uninitialized(outputs[0].byteCount ?? 0)
    var accumulator = ErrorAccumulator()
    var values = [Float](repeating: 0, count: columns)
    var reconstruction = [Float](repeating: 0, count: columns)
    var written = 0
    var zeros = 0
    output.withUnsafeMutableBytes { out in
      for r in 0..<rows {
        let source = UnsafeRawBufferPointer(rebasing: input.bytes[(r * rowBytes)..<((r + 1) * rowBytes)])
        values.withUnsafeMutableBufferPointer { v in
          Float32Conversion.convert(source, dtype: dtype, count: columns, into: v)
        }
        let rowGone = removedRows.contains(r)
        for i in 0..<columns { reconstruction[i] = rowGone || removedColumns.contains(i) ? 0 : values[i] }
        for v in reconstruction where v == 0 { zeros += 1 }
        values.withUnsafeBufferPointer { v in
          reconstruction.withUnsafeBufferPointer { accumulator.add(reference: v, reconstruction: $0) }
        }
        if configuration.shrink {
          guard !rowGone else { continue }
          for run in keptRuns {
            let bytes = run.count * elementSize
            out.baseAddress!.advanced(by: written).copyMemory(
              from: source.baseAddress!.advanced(by: run.lowerBound * elementSize), byteCount: bytes)
            written += bytes
          }
        } else {
          let target = out.baseAddress!.advanced(by: written)
          target.copyMemory(from: source.baseAddress!, byteCount: rowBytes)
          for i in 0..<columns where rowGone || removedColumns.contains(i) {
            target.advanced(by: i * elementSize).initializeMemory(as: UInt8.self, repeating: 0, count: elementSize)
          }
          written += rowBytes
        }
      }
    }
    try RowLoops.rejectNonFinite(accumulator, input, rows: rows, columns: columns, purpose: "pruning")
    let count = rows * columns
    var info = SparsityInfo(
      target: nil, achieved: Double(zeros) / Double(max(count, 1)), zeros: zeros,
      pruned: count - (rows - removedRows.count) * (columns - removedColumns.count))
    info.unit = cut.unit
    info.unitGroup = cut.group
    info.unitsRemoved = cut.count.removed
    info.unitsTotal = cut.count.total
    info.attentionHeadsRemoved = cut.count.headsRemoved
    info.attentionHeadsTotal = cut.count.headsTotal
    info.shapeAfter = outputs[0].shape
    return TransformResult(outputs: [.owned(output)], reconstruction: .measured(accumulator), sparsity: info)
  }

}

/// Structured pruning's units in one layer of the model, for the report.
public struct LayerUnits: Codable, Sendable, Equatable {
  /// The layer index in the tensor names (as the chart finds it); absent for a group
  /// outside any layer.
  public var layer: Int?
  /// The layer's name prefix ("model.layers.0"), or the group's name outside any layer.
  public var name: String
  public var unitsRemoved: Int
  public var unitsTotal: Int
  /// With key-value head groups: the attention heads in them.
  public var attentionHeadsRemoved: Int?
  public var attentionHeadsTotal: Int?

  public var count: UnitCount {
    UnitCount(
      removed: unitsRemoved, total: unitsTotal, headsRemoved: attentionHeadsRemoved, headsTotal: attentionHeadsTotal)
  }

  init(layer: Int?, name: String, count: UnitCount) {
    self.layer = layer
    self.name = name
    unitsRemoved = count.removed
    unitsTotal = count.total
    attentionHeadsRemoved = count.headsRemoved
    attentionHeadsTotal = count.headsTotal
  }

  enum CodingKeys: String, CodingKey {
    case layer, name
    case unitsRemoved = "units_removed"
    case unitsTotal = "units_total"
    case attentionHeadsRemoved = "attention_heads_removed"
    case attentionHeadsTotal = "attention_heads_total"
  }
}

extension SparsityInfo {
  /// The structured units of a tensor, a layer's or the model's.
  public var unitCount: UnitCount? {
    guard let unitsRemoved, let unitsTotal else { return nil }
    return UnitCount(
      removed: unitsRemoved, total: unitsTotal, headsRemoved: attentionHeadsRemoved, headsTotal: attentionHeadsTotal)
  }

  /// Sets the model's units and the per-layer list from the tensors' entries (name,
  /// info): each coupled group counted once (by its first tensor; every tensor of a
  /// group carries the group's count), the groups summed per layer. An entry without a
  /// group (a report from before groups were recorded) is its own group.
  mutating func addUnits(of tensors: [(String, SparsityInfo)]) {
    var seen: Set<String> = []
    var layers: [Int: UnitCount] = [:]
    var layerNames: [Int: String] = [:]
    var outside: [(String, UnitCount)] = []
    var model = UnitCount()
    var units: Set<PrunedUnit?> = []
    for (name, info) in tensors {
      guard let count = info.unitCount else { continue }
      let group = info.unitGroup ?? name
      guard seen.insert(group).inserted else { continue }
      units.insert(info.unit)
      model = model + count
      if let layer = Report.layerIndex(of: group), let prefix = Report.layerPrefix(of: group) {
        layers[layer] = (layers[layer] ?? UnitCount()) + count
        layerNames[layer] = layerNames[layer] ?? prefix
      } else {
        outside.append((group, count))
      }
    }
    unit = units.count == 1 ? units.first! : nil
    unitsRemoved = model.removed
    unitsTotal = model.total
    attentionHeadsRemoved = model.headsRemoved
    attentionHeadsTotal = model.headsTotal
    self.layers =
      layers.keys.sorted().map { LayerUnits(layer: $0, name: layerNames[$0] ?? "\($0)", count: layers[$0]!) }
      + outside.map { LayerUnits(layer: nil, name: $0.0, count: $0.1) }
  }
}
