import CheckpointIO
import Foundation

/// One logical dense tensor of a `DenseCheckpoint`: a plain stored tensor, or the dense
/// weight a compressed module stands for.
public struct DenseTensor: Sendable, Equatable {
  /// The dense name (`<module>.weight` for a compressed module).
  public var name: String
  /// The dense shape.
  public var shape: [Int]
  /// The dtype of the values: the stored dtype of a plain tensor, F32 for a decompressed one.
  public var dtype: DType
  /// How the tensor is stored: its dtype ("BF16"), or the primary stored tensor's dtype and
  /// how it is decompressed ("I32 dequantized").
  public var storage: String
  /// The stored tensor the values come from (the primary one of a compressed module).
  let source: CheckpointTensor
  /// The dense weight a compressed tensor decodes to, nil for a plain tensor.
  let planned: DenseWeight?

  /// Number of elements.
  public var elementCount: Int { PlannedTensor(name: name, dtype: dtype, shape: shape).elementCount ?? 0 }
}

/// A checkpoint of any format this tool reads, seen as dense tensors whose values are
/// materialised one at a time. A compressed-tensors checkpoint (quantized or
/// sparse-bitmask) and factorize's low-rank output are decompressed on the fly by
/// `DecompressPass` to Float32; any other checkpoint is read as stored.
public struct DenseCheckpoint: Sendable {
  /// The opened checkpoint.
  public let checkpoint: Checkpoint
  /// "dense", or the compressed format that is decompressed on the fly.
  public let format: String
  /// The logical tensors, in checkpoint order (companion tensors are folded in).
  public let tensors: [DenseTensor]
  /// Things the user should know (a checkpoint that looks compressed but is read as stored).
  public let warnings: [String]
  let layout: StoredLayout?
  private let byName: [String: Int]

  /// Opens `path` and works out its dense view.
  public init(path: String) throws {
    try self.init(try Checkpoint.open(path))
  }

  /// The dense view of `checkpoint`. Throws when it declares a compressed format that
  /// cannot be decompressed.
  public init(_ checkpoint: Checkpoint) throws(SwiftCompressError) {
    self.checkpoint = checkpoint
    var layout: StoredLayout?
    do {
      layout = try StoredLayout.read(checkpoint)
    } catch {
      // Only a checkpoint that declares no quantization_config is read as stored.
      if Self.declaresQuantization(checkpoint) { throw error }
      layout = nil
    }
    self.layout = layout
    format = layout?.name ?? "dense"
    var tensors: [DenseTensor] = []
    for tensor in checkpoint.tensors {
      let stored = DenseTensor(
        name: tensor.name, shape: tensor.info.shape, dtype: tensor.info.dtype, storage: tensor.info.dtype.rawValue,
        source: tensor, planned: nil)
      guard let layout else {
        tensors.append(stored)
        continue
      }
      switch try layout.role(of: TensorDescriptor(tensor.info)) {
      case .other:
        tensors.append(stored)
      case .companion:
        break  // folded into its weight's primary tensor
      case .primary(let weight):
        tensors.append(
          DenseTensor(
            name: weight.name, shape: weight.shape, dtype: .f32,
            storage: tensor.info.dtype.rawValue + " " + weight.note, source: tensor, planned: weight))
      }
    }
    self.tensors = tensors
    var byName: [String: Int] = [:]
    for (i, tensor) in tensors.enumerated() { byName[tensor.name] = i }
    self.byName = byName
    var warnings: [String] = []
    if layout == nil,
      let sign = checkpoint.tensors.first(where: {
        $0.name.hasSuffix(".weight_packed") || $0.name.hasSuffix(".weight_scale") || $0.name.hasSuffix(".weight_a")
          || $0.name.hasSuffix(".bitmask")
      })
    {
      warnings.append(
        "\(checkpoint.path) holds '\(sign.name)' but no config.json with a quantization_config (or factorize record): its tensors are compared as stored; give the checkpoint's folder to compare dense weights"
      )
    }
    self.warnings = warnings
  }

  /// Whether the checkpoint's config.json has a `quantization_config`.
  static func declaresQuantization(_ checkpoint: Checkpoint) -> Bool {
    guard checkpoint.layout != .file,
      let data = FileManager.default.contents(atPath: checkpoint.folder + "/config.json"),
      let config = try? JSONParser.parse(Array(data))
    else { return false }
    return config["quantization_config"] != nil
  }

  /// The logical tensor named `name`.
  public func tensor(named name: String) -> DenseTensor? {
    byName[name].map { tensors[$0] }
  }

  /// Calls `body` with the values of `tensor`, decompressing it when needed, then drops
  /// every stored tensor it read from the resident set.
  func withValues<R>(of tensor: DenseTensor, _ body: (DenseValues) throws -> R) throws -> R {
    let checkpoint = self.checkpoint
    let companions = CompanionLog()
    defer {
      checkpoint.release(tensor.source)
      for companion in companions.tensors { checkpoint.release(companion) }
    }
    let bytes = checkpoint.bytes(of: tensor.source)
    guard let weight = tensor.planned, let layout else {
      return try body(.stored(TensorInput(descriptor: TensorDescriptor(tensor.source.info), bytes: bytes)))
    }
    let input = TensorInput(descriptor: TensorDescriptor(tensor.source.info), bytes: bytes) { name in
      guard let companion = checkpoint.tensor(named: name) else { return nil }
      companions.tensors.append(companion)
      return TensorInput(descriptor: TensorDescriptor(companion.info), bytes: checkpoint.bytes(of: companion))
    }
    let floats = try layout.decode(input, as: weight)
    guard floats.count == weight.shape.reduce(1, *) else {
      throw SwiftCompressError.passBrokePlan(
        pass: layout.name, tensor: tensor.source.name,
        reason: "decoded \(floats.count) values for \(weight.shape.reduce(1, *))")
    }
    return try body(.decoded(floats))
  }
}

/// The companion tensors a decompression read (released afterwards).
private final class CompanionLog: @unchecked Sendable {
  var tensors: [CheckpointTensor] = []
}

/// The values of one logical tensor: stored bytes, or decompressed Float32 values.
enum DenseValues {
  case stored(TensorInput)
  case decoded([Float])

  /// Elements `start..<start + count` as Float32 in `scratch`.
  func floats(from start: Int, count: Int, into scratch: UnsafeMutableBufferPointer<Float>)
    -> UnsafeBufferPointer<Float>
  {
    switch self {
    case .stored(let input):
      let dtype = input.descriptor.dtype
      let byteStart = start * dtype.bitsPerElement / 8
      let byteEnd = (start + count) * dtype.bitsPerElement / 8
      Float32Conversion.convert(
        UnsafeRawBufferPointer(rebasing: input.bytes[byteStart..<byteEnd]), dtype: dtype, count: count, into: scratch)
    case .decoded(let values):
      values.withUnsafeBufferPointer {
        _ = UnsafeMutableBufferPointer(rebasing: scratch[0..<count]).initialize(from: $0[start..<(start + count)])
      }
    }
    return UnsafeBufferPointer(rebasing: scratch[0..<count])
  }
}

/// The per-tensor differences between two checkpoints, B measured against A as the
/// reference (`swiftcompress diff`). Schema in docs/report-schema.md.
public struct DiffReport: Codable, Sendable, Equatable {
  public static let schemaName = "swiftcompress-diff"
  public static let currentSchemaVersion = 1

  public var schema = DiffReport.schemaName
  public var schemaVersion = DiffReport.currentSchemaVersion
  public var tool = Report.Tool()
  /// The reference checkpoint.
  public var a: Side
  /// The checkpoint compared with it.
  public var b: Side
  public var selection: Report.Selection
  /// Every logical tensor in both checkpoints with the same shape, in A's order.
  public var tensors: [TensorDiff]
  /// Logical tensors only A has.
  public var onlyInA: [String]
  /// Logical tensors only B has.
  public var onlyInB: [String]
  /// Logical tensors both have, in different shapes (not compared).
  public var shapeMismatches: [ShapeMismatch]
  public var totals: Totals
  /// Things the user should know about this comparison.
  public var warnings: [String] = []

  /// One checkpoint of the comparison.
  public struct Side: Codable, Sendable, Equatable {
    public var path: String
    /// "file", "folder" or "sharded".
    public var layout: String
    /// "dense", or the compressed format decompressed on the fly.
    public var format: String
    /// Logical (dense) tensors.
    public var tensorCount: Int

    enum CodingKeys: String, CodingKey {
      case path, layout, format
      case tensorCount = "tensor_count"
    }
  }

  /// One compared tensor.
  public struct TensorDiff: Codable, Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var parameters: Int
    /// How A stores it (for example "BF16", or "I32 dequantized").
    public var aStorage: String
    /// How B stores it.
    public var bStorage: String
    /// "float" (both floating point: metrics) or "exact" (integer or boolean on either
    /// side: equal only when dtype and bytes are).
    public var comparison: String
    /// B against A; nil for an exact comparison.
    public var metrics: ErrorMetrics?
    /// Whether the values are identical (a float tensor: zero error and no NaN or infinity).
    public var equal: Bool

    enum CodingKeys: String, CodingKey {
      case name, shape, parameters
      case aStorage = "a_storage"
      case bStorage = "b_storage"
      case comparison, metrics, equal
    }

    // An absent metrics object is written as null, so the key is always present.
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(name, forKey: .name)
      try c.encode(shape, forKey: .shape)
      try c.encode(parameters, forKey: .parameters)
      try c.encode(aStorage, forKey: .aStorage)
      try c.encode(bStorage, forKey: .bStorage)
      try c.encode(comparison, forKey: .comparison)
      try c.encode(metrics, forKey: .metrics)
      try c.encode(equal, forKey: .equal)
    }

    /// Whether the tensor fails a `--max-error` gate of `maxError`: a relative error
    /// above it, a NaN or infinity on either side, or different integer values.
    public func exceeds(maxError: Double) -> Bool {
      guard let metrics else { return !equal }
      return !(metrics.relativeFrobeniusError <= maxError) || metrics.nonFiniteCount > 0
    }
  }

  /// A tensor both checkpoints have in different shapes.
  public struct ShapeMismatch: Codable, Sendable, Equatable {
    public var name: String
    public var aShape: [Int]
    public var bShape: [Int]
    public var aStorage: String
    public var bStorage: String

    enum CodingKeys: String, CodingKey {
      case name
      case aShape = "a_shape"
      case bShape = "b_shape"
      case aStorage = "a_storage"
      case bStorage = "b_storage"
    }
  }

  public struct Totals: Codable, Sendable, Equatable {
    /// Tensors compared (in both, same shape).
    public var compared: Int
    /// Of those, compared as floats.
    public var floatTensors: Int
    /// Of those, compared exactly (integer or boolean).
    public var exactTensors: Int
    /// Compared tensors with identical values.
    public var equal: Int
    /// Compared tensors whose values differ.
    public var differing: Int
    public var onlyInA: Int
    public var onlyInB: Int
    public var shapeMismatches: Int
    /// Elements of the compared tensors.
    public var parameters: Int
    /// Over the float tensors: error energy summed over tensors relative to A's summed
    /// energy, as quantize's totals; nil when no float tensor was compared.
    public var metrics: ErrorMetrics?

    enum CodingKeys: String, CodingKey {
      case compared
      case floatTensors = "float_tensors"
      case exactTensors = "exact_tensors"
      case equal, differing
      case onlyInA = "only_in_a"
      case onlyInB = "only_in_b"
      case shapeMismatches = "shape_mismatches"
      case parameters, metrics
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(compared, forKey: .compared)
      try c.encode(floatTensors, forKey: .floatTensors)
      try c.encode(exactTensors, forKey: .exactTensors)
      try c.encode(equal, forKey: .equal)
      try c.encode(differing, forKey: .differing)
      try c.encode(onlyInA, forKey: .onlyInA)
      try c.encode(onlyInB, forKey: .onlyInB)
      try c.encode(shapeMismatches, forKey: .shapeMismatches)
      try c.encode(parameters, forKey: .parameters)
      try c.encode(metrics, forKey: .metrics)
    }
  }

  enum CodingKeys: String, CodingKey {
    case schema
    case schemaVersion = "schema_version"
    case tool, a, b, selection, tensors
    case onlyInA = "only_in_a"
    case onlyInB = "only_in_b"
    case shapeMismatches = "shape_mismatches"
    case totals, warnings
  }

  /// Whether every selected tensor is in both checkpoints in the same shape.
  public var isComplete: Bool { onlyInA.isEmpty && onlyInB.isEmpty && shapeMismatches.isEmpty }

  /// The compared tensors that fail a `--max-error` gate of `maxError` (see
  /// `TensorDiff.exceeds(maxError:)`).
  public func tensors(exceeding maxError: Double) -> [TensorDiff] {
    tensors.filter { $0.exceeds(maxError: maxError) }
  }

  /// The report as pretty, key-sorted JSON (non-finite numbers as strings).
  public func jsonText() -> String { Format.json(self) }
}

/// Compares two checkpoints tensor by tensor.
public enum CheckpointDiff {
  /// Compares every logical dense tensor of `b` with `a`'s as the reference, decompressing
  /// either side on the fly. Float tensors get `ErrorMetrics` (B against A); integer and
  /// boolean tensors are compared for exact equality. Tensors only one side has and shape
  /// mismatches are listed, not compared. With `selection`, only the logical names its
  /// `--include` / `--exclude` patterns allow are considered (no default exclusions).
  /// At most one tensor of each side is held in memory at a time.
  public static func compare(_ a: String, _ b: String, selection: TensorSelection? = nil) throws -> DiffReport {
    let left = try DenseCheckpoint(path: a)
    let right = try DenseCheckpoint(path: b)
    func selected(_ tensor: DenseTensor) -> Bool {
      guard let selection else { return true }
      let descriptor = TensorDescriptor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)
      return selection.decide(descriptor, defaults: false) == .selected
    }
    var diffs: [DiffReport.TensorDiff] = []
    var onlyInA: [String] = []
    var mismatches: [DiffReport.ShapeMismatch] = []
    var total = ErrorAccumulator()
    var scratchA = [Float](repeating: 0, count: chunkElementCount)
    var scratchB = [Float](repeating: 0, count: chunkElementCount)
    for tensor in left.tensors where selected(tensor) {
      guard let other = right.tensor(named: tensor.name) else {
        onlyInA.append(tensor.name)
        continue
      }
      guard tensor.shape == other.shape else {
        mismatches.append(
          DiffReport.ShapeMismatch(
            name: tensor.name, aShape: tensor.shape, bShape: other.shape, aStorage: tensor.storage,
            bStorage: other.storage))
        continue
      }
      var diff = DiffReport.TensorDiff(
        name: tensor.name, shape: tensor.shape, parameters: tensor.elementCount, aStorage: tensor.storage,
        bStorage: other.storage, comparison: "float", metrics: nil, equal: false)
      if tensor.dtype.isFloatingPoint && other.dtype.isFloatingPoint {
        let accumulator = try left.withValues(of: tensor) { x in
          try right.withValues(of: other) { y in
            accumulate(x, y, count: tensor.elementCount, scratchA: &scratchA, scratchB: &scratchB)
          }
        }
        total.merge(accumulator)
        diff.metrics = accumulator.metrics
        diff.equal = accumulator.errorSquares == 0 && accumulator.maxAbsError == 0 && accumulator.nonFinite == 0
      } else {
        diff.comparison = "exact"
        let sameValues = try left.withValues(of: tensor) { x in
          try right.withValues(of: other) { y in sameBytes(x, y) }
        }
        diff.equal = tensor.dtype == other.dtype && sameValues
      }
      diffs.append(diff)
    }
    let onlyInB = right.tensors.filter { selected($0) && left.tensor(named: $0.name) == nil }.map(\.name)
    let floatCount = diffs.filter { $0.comparison == "float" }.count
    let equalCount = diffs.filter(\.equal).count
    return DiffReport(
      a: side(a, left), b: side(b, right),
      selection: Report.Selection(include: selection?.include ?? [], exclude: selection?.exclude ?? []),
      tensors: diffs, onlyInA: onlyInA, onlyInB: onlyInB, shapeMismatches: mismatches,
      totals: DiffReport.Totals(
        compared: diffs.count, floatTensors: floatCount, exactTensors: diffs.count - floatCount, equal: equalCount,
        differing: diffs.count - equalCount, onlyInA: onlyInA.count, onlyInB: onlyInB.count,
        shapeMismatches: mismatches.count, parameters: diffs.reduce(0) { $0 + $1.parameters },
        metrics: floatCount > 0 ? total.metrics : nil),
      warnings: left.warnings + right.warnings)
  }

  static func side(_ path: String, _ view: DenseCheckpoint) -> DiffReport.Side {
    DiffReport.Side(
      path: path, layout: view.checkpoint.layout.rawValue, format: view.format, tensorCount: view.tensors.count)
  }

  /// B against A, chunk by chunk (the chunks quantize's own measurement uses).
  static func accumulate(
    _ x: DenseValues, _ y: DenseValues, count: Int, scratchA: inout [Float], scratchB: inout [Float]
  ) -> ErrorAccumulator {
    var accumulator = ErrorAccumulator()
    scratchA.withUnsafeMutableBufferPointer { bufferA in
      scratchB.withUnsafeMutableBufferPointer { bufferB in
        var start = 0
        while start < count {
          let n = min(chunkElementCount, count - start)
          accumulator.add(
            reference: x.floats(from: start, count: n, into: bufferA),
            reconstruction: y.floats(from: start, count: n, into: bufferB))
          start += n
        }
      }
    }
    return accumulator
  }

  /// Whether two stored tensors hold the same bytes (decoded values are never integer).
  static func sameBytes(_ x: DenseValues, _ y: DenseValues) -> Bool {
    guard case .stored(let p) = x, case .stored(let q) = y else { return false }
    return p.bytes.elementsEqual(q.bytes)
  }
}
