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

/// How a unit is scored: the L1 or L2 norm of all its weights across the coupled tensors.
public enum UnitNorm: String, Codable, Sendable, CaseIterable {
  case l1, l2
}

/// Structured pruning's decisions, made in `prepared(for:)` from every coupled tensor:
/// per tensor the rows and columns removed (or zeroed), and the config.json changes.
struct StructuredPlan: Sendable, Equatable {
  struct Cut: Sendable, Equatable {
    var rows: [Int] = []
    var columns: [Int] = []
    var unitsRemoved: Int
    var unitsTotal: Int
  }

  var cuts: [String: Cut] = [:]
  /// config.json keys set after --shrink (name, value), in order.
  var configChanges: [(String, Int)] = []
  var warnings: [String] = []

  static func == (a: StructuredPlan, b: StructuredPlan) -> Bool {
    a.cuts == b.cuts && a.configChanges.map(\.0) == b.configChanges.map(\.0)
      && a.configChanges.map(\.1) == b.configChanges.map(\.1) && a.warnings == b.warnings
  }

  /// A slice of a tensor that belongs to a unit: rows or columns `range`.
  private struct Member {
    var tensor: String
    var alongRows: Bool
  }

  init(checkpoint: Checkpoint, pass: PrunePass) throws(SwiftCompressError) {
    let configuration = pass.configuration
    guard let unit = configuration.structure, let ratio = configuration.ratio else { return }
    let config = Self.config(of: checkpoint)
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
        guard info.shape.count == 2, let module = QuantizePass.module(of: tensor.name), !ignored(module),
          !TensorSelection.isEmbedding(tensor.name), [.f32, .bf16, .f16].contains(info.dtype)
        else { continue }
        let units = unit == .rows ? info.shape[0] : info.shape[1]
        let members = [(tensor.name, unit == .rows)]
        let removed = try Self.choose(
          members: members, units: units, unitSize: 1, ratio: ratio, norm: configuration.norm, checkpoint: checkpoint,
          label: module)
        cuts[tensor.name] =
          unit == .rows
          ? Cut(rows: removed, unitsRemoved: removed.count, unitsTotal: units)
          : Cut(columns: removed, unitsRemoved: removed.count, unitsTotal: units)
      }
    case .mlp:
      var intermediate: Int?
      for layer in Self.layers(names, suffix: ".mlp.gate_proj.weight") {
        let gate = layer + ".mlp.gate_proj", up = layer + ".mlp.up_proj", down = layer + ".mlp.down_proj"
        if try anyIgnored([gate, up, down]) { continue }
        guard names.contains(up + ".weight"), names.contains(down + ".weight"),
          let units = checkpoint.tensor(named: gate + ".weight")?.info.shape.first
        else { continue }
        var members = [(gate + ".weight", true), (up + ".weight", true), (down + ".weight", false)]
        for bias in [gate + ".bias", up + ".bias"] where names.contains(bias) { members.append((bias, true)) }
        let removed = try Self.choose(
          members: members, units: units, unitSize: 1, ratio: ratio, norm: configuration.norm, checkpoint: checkpoint,
          label: layer + ".mlp")
        record(members, removed: removed, unitSize: 1, units: units)
        intermediate = units - removed.count
      }
      for layer in Self.layers(names, suffix: ".intermediate.dense.weight") {
        let inner = layer + ".intermediate.dense", outer = layer + ".output.dense"
        if try anyIgnored([inner, outer]) { continue }
        guard names.contains(outer + ".weight"),
          let units = checkpoint.tensor(named: inner + ".weight")?.info.shape.first
        else { continue }
        var members = [(inner + ".weight", true), (outer + ".weight", false)]
        if names.contains(inner + ".bias") { members.append((inner + ".bias", true)) }
        let removed = try Self.choose(
          members: members, units: units, unitSize: 1, ratio: ratio, norm: configuration.norm, checkpoint: checkpoint,
          label: layer + ".intermediate")
        record(members, removed: removed, unitSize: 1, units: units)
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
      guard let config, let heads = config["num_attention_heads"]?.uint64Value.map(Int.init), heads > 0 else {
        throw .invalidCheckpoint(
          path: checkpoint.path, reason: "head pruning needs a config.json with num_attention_heads next to the weights"
        )
      }
      let kvHeads = config["num_key_value_heads"]?.uint64Value.map(Int.init) ?? heads
      guard kvHeads > 0, heads % kvHeads == 0 else {
        throw .invalidFile(
          path: checkpoint.folder + "/config.json",
          reason: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
      }
      let perGroup = heads / kvHeads
      var kept: Int?
      var headDim = 0
      for layer in Self.layers(names, suffix: ".self_attn.q_proj.weight") {
        let p = layer + ".self_attn."
        if try anyIgnored(["q_proj", "k_proj", "v_proj", "o_proj"].map { p + $0 }) { continue }
        guard let q = checkpoint.tensor(named: p + "q_proj.weight")?.info.shape,
          names.contains(p + "k_proj.weight"), names.contains(p + "v_proj.weight"), names.contains(p + "o_proj.weight")
        else { continue }
        headDim = q[0] / heads
        guard headDim * heads == q[0] else {
          throw .invalidTensor(
            name: p + "q_proj.weight", reason: "its \(q[0]) rows are not num_attention_heads \(heads) x a head size")
        }
        // A unit is one key-value group: its key and value rows, and the rows of the
        // query heads it serves with the matching o_proj columns.
        let removed = try Self.chooseHeads(
          layer: p, heads: heads, kvHeads: kvHeads, headDim: headDim, ratio: ratio, norm: configuration.norm,
          names: names, checkpoint: checkpoint)
        let queryUnits = removed.flatMap { g in (g * perGroup)..<((g + 1) * perGroup) }
        var queryMembers = [(p + "q_proj.weight", true), (p + "o_proj.weight", false)]
        if names.contains(p + "q_proj.bias") { queryMembers.append((p + "q_proj.bias", true)) }
        record(queryMembers, removed: queryUnits, unitSize: headDim, units: heads)
        var kvMembers = [(p + "k_proj.weight", true), (p + "v_proj.weight", true)]
        for bias in [p + "k_proj.bias", p + "v_proj.bias"] where names.contains(bias) { kvMembers.append((bias, true)) }
        record(kvMembers, removed: removed, unitSize: headDim, units: kvHeads)
        kept = kvHeads - removed.count
      }
      for layer in Self.layers(names, suffix: ".attention.self.query.weight") {
        let prefix = layer + ".attention."
        if try anyIgnored(["self.query", "self.key", "self.value", "output.dense"].map { prefix + $0 }) { continue }
        if configuration.shrink {
          throw .invalidOption(
            option: "--shrink",
            reason:
              "transformers derives BERT's head size from hidden_size / num_attention_heads, so a BERT with fewer heads cannot be described in config.json; prune BERT heads without --shrink (zeroed in place)"
          )
        }
        let p = layer + ".attention."
        guard let q = checkpoint.tensor(named: p + "self.query.weight")?.info.shape,
          names.contains(p + "output.dense.weight")
        else { continue }
        headDim = q[0] / heads
        var members = [(p + "self.query.weight", true), (p + "output.dense.weight", false)]
        for part in ["key", "value"] where names.contains(p + "self.\(part).weight") {
          members.append((p + "self.\(part).weight", true))
        }
        for part in ["query", "key", "value"] where names.contains(p + "self.\(part).bias") {
          members.append((p + "self.\(part).bias", true))
        }
        let removed = try Self.choose(
          members: members, units: heads, unitSize: headDim, ratio: ratio, norm: configuration.norm,
          checkpoint: checkpoint, label: p + "self")
        record(members, removed: removed, unitSize: headDim, units: heads)
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

  /// Records that `removed` units (each `unitSize` rows or columns) go from `members`.
  private mutating func record(_ members: [(String, Bool)], removed: [Int], unitSize: Int, units: Int) {
    let indices = removed.flatMap { u in (u * unitSize)..<((u + 1) * unitSize) }
    for (tensor, alongRows) in members {
      cuts[tensor] =
        alongRows
        ? Cut(rows: indices, unitsRemoved: removed.count, unitsTotal: units)
        : Cut(columns: indices, unitsRemoved: removed.count, unitsTotal: units)
    }
  }

  static func config(of checkpoint: Checkpoint) -> JSONValue? {
    guard checkpoint.layout != .file,
      let data = FileManager.default.contents(atPath: checkpoint.folder + "/config.json")
    else { return nil }
    return try? JSONParser.parse(Array(data))
  }

  /// Layer prefixes of tensors named `<prefix><suffix>`, in name order.
  static func layers(_ names: Set<String>, suffix: String) -> [String] {
    names.filter { $0.hasSuffix(suffix) }.map { String($0.dropLast(suffix.count)) }.sorted()
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

  /// Key-value groups scored over their key/value rows, their query heads' rows and the
  /// matching o_proj columns.
  static func chooseHeads(
    layer p: String, heads: Int, kvHeads: Int, headDim: Int, ratio: Double, norm: UnitNorm, names: Set<String>,
    checkpoint: Checkpoint
  ) throws(SwiftCompressError) -> [Int] {
    let perGroup = heads / kvHeads
    var queryMembers = [(p + "q_proj.weight", true), (p + "o_proj.weight", false)]
    if names.contains(p + "q_proj.bias") { queryMembers.append((p + "q_proj.bias", true)) }
    var kvMembers = [(p + "k_proj.weight", true), (p + "v_proj.weight", true)]
    for bias in [p + "k_proj.bias", p + "v_proj.bias"] where names.contains(bias) { kvMembers.append((bias, true)) }
    let query = try unitSums(queryMembers, units: heads, unitSize: headDim, norm: norm, checkpoint: checkpoint)
    let kv = try unitSums(kvMembers, units: kvHeads, unitSize: headDim, norm: norm, checkpoint: checkpoint)
    var groups = kv
    for h in 0..<heads { groups[h / perGroup] += query[h] }
    return try lowest(groups, ratio: ratio, label: p + "self_attn")
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
    guard let cut = structuredPlan?.cuts[tensor.name] else {
      return .keep(reason: "not part of a pruned unit")
    }
    var shape = tensor.shape
    if configuration.shrink {
      shape[0] -= cut.rows.count
      if shape.count > 1 { shape[1] -= cut.columns.count }
    }
    let what = configuration.structure?.rawValue ?? "units"
    let verb = configuration.shrink ? "removed" : "zeroed"
    return .transform(
      outputs: [PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: shape)],
      note: "\(cut.unitsRemoved) of \(cut.unitsTotal) \(what) units \(verb) (\(configuration.norm.rawValue))")
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
    var output: [UInt8] = QuantizePass.uninitialized(outputs[0].byteCount ?? 0)
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
    try QuantizePass.rejectNonFinite(accumulator, input, rows: rows, columns: columns, purpose: "pruning")
    let count = rows * columns
    var info = SparsityInfo(
      target: nil, achieved: Double(zeros) / Double(max(count, 1)), zeros: zeros,
      pruned: count - (rows - removedRows.count) * (columns - removedColumns.count))
    info.unitsRemoved = cut.unitsRemoved
    info.unitsTotal = cut.unitsTotal
    info.shapeAfter = outputs[0].shape
    return TransformResult(outputs: [.owned(output)], reconstruction: .measured(accumulator), sparsity: info)
  }

}
