import CheckpointIO
import Foundation

/// A model's tensors as dense Float32 values, by their dense names ("model.layers.0.mlp.up_proj.weight"),
/// from any checkpoint swiftcompress reads or writes: dense F32/F16/BF16/F64, and every compressed layout
/// it writes (quantized, sparse bitmask, factors, low-rank residual), decoded through the checkpoint's
/// `StoredLayout` one tensor at a time. A decoded weight is rounded to the model's dtype
/// (`torch_dtype`) as `decompress` writes it, so a forward pass computes on what `decompress` would
/// give a loader.
///
/// The forward pass asks for one layer's tensors at a time and calls `release` when it is done with
/// them, so the mapped pages of the stored bytes can be dropped: memory holds one layer's weights.
public final class ModelWeights: @unchecked Sendable {
  /// The checkpoint read.
  public let checkpoint: Checkpoint
  /// Its layout, nil for a dense checkpoint.
  public let layout: StoredLayout?
  /// Each compressed weight's dense name -> its primary stored tensor and dense description.
  let primaries: [String: (stored: CheckpointTensor, weight: DenseWeight)]
  /// Stored tensors that are read with a primary (scales, zero points, second factors).
  let companions: Set<String>
  /// Dense values that stand in for stored tensors (the layer-by-layer calibration puts a
  /// compressed layer's decoded weights here so that later layers see its outputs).
  private var overrides: [String: [Float]] = [:]

  /// From now on `floats(name)` and `weight(name)` give `values` (same shape as the stored tensor).
  public func override(_ name: String, with values: [Float]) { overrides[name] = values }

  /// Forgets every override.
  public func clearOverrides() { overrides.removeAll() }

  /// Reads the layout of `checkpoint` (a dense one has none).
  public init(_ checkpoint: Checkpoint) throws(SwiftCompressError) {
    self.checkpoint = checkpoint
    let config = LoaderContract.config(of: checkpoint)
    let compressed =
      config?["quantization_config"] != nil || config?[LowRankRecord.configKey] != nil
    guard compressed else {
      layout = nil
      primaries = [:]
      companions = []
      return
    }
    let layout = try StoredLayout.read(checkpoint)
    var primaries: [String: (stored: CheckpointTensor, weight: DenseWeight)] = [:]
    var companions: Set<String> = []
    for tensor in checkpoint.tensors {
      switch try layout.role(of: TensorDescriptor(tensor.info)) {
      case .primary(let weight): primaries[weight.name] = (tensor, weight)
      case .companion: companions.insert(tensor.name)
      case .other: break
      }
    }
    self.layout = layout
    self.primaries = primaries
    self.companions = companions
  }

  /// Opens the checkpoint at `path` (a file or a folder) and reads its layout.
  /// Throws `CheckpointError` for an unreadable checkpoint, `SwiftCompressError` for a layout.
  public convenience init(path: String) throws {
    try self.init(try Checkpoint.open(path))
  }

  /// Whether the model has a tensor of dense name `name`.
  public func contains(_ name: String) -> Bool {
    primaries[name] != nil || (!companions.contains(name) && checkpoint.tensor(named: name) != nil)
  }

  /// The dense shape of tensor `name`, nil when there is none.
  public func shape(of name: String) -> [Int]? {
    if let primary = primaries[name] { return primary.weight.shape }
    guard !companions.contains(name), let tensor = checkpoint.tensor(named: name) else { return nil }
    return tensor.info.shape
  }

  /// The dense Float32 values of tensor `name`, row-major in `shape(of:)`.
  public func floats(_ name: String) throws(SwiftCompressError) -> [Float] {
    if let values = overrides[name] { return values }
    if let (stored, weight) = primaries[name], let layout {
      let input = TensorInput(descriptor: TensorDescriptor(stored.info), bytes: checkpoint.bytes(of: stored)) {
        [checkpoint] name in
        checkpoint.tensor(named: name).map {
          TensorInput(descriptor: TensorDescriptor($0.info), bytes: checkpoint.bytes(of: $0))
        }
      }
      var values = try layout.decode(input, as: weight)
      // What decompress writes: the dense values in the dtype the layout keeps, else the model's.
      if let dtype = weight.dtype ?? layout.modelDType, dtype == .bf16 || dtype == .f16 {
        let rounded = DenseCodec.encode(values, as: dtype)
        values = rounded.withUnsafeBytes { Float32Conversion.floats($0, dtype: dtype, count: values.count) }
      }
      return values
    }
    guard !companions.contains(name), let tensor = checkpoint.tensor(named: name) else {
      throw .invalidTensor(name: name, reason: "is not in \(checkpoint.path)")
    }
    guard tensor.info.dtype.isFloatingPoint else {
      throw .invalidTensor(
        name: name, reason: "is \(tensor.info.dtype.rawValue); the forward pass reads floating-point tensors")
    }
    return Float32Conversion.floats(
      checkpoint.bytes(of: tensor), dtype: tensor.info.dtype, count: tensor.info.elementCount)
  }

  /// The Float32 values of tensor `name`, read in place when they can be: a dense F32 tensor at a
  /// 4-byte-aligned offset of the mapping is a view of the mapped pages (no copy, no fresh pages),
  /// anything else (F16, BF16, F64, a compressed weight) is decoded as `floats(_:)` decodes it.
  /// A view stays valid while this `ModelWeights` lives; `release(_:)` only drops its resident
  /// pages, which a later read maps again.
  public func weight(_ name: String) throws(SwiftCompressError) -> Weight {
    if let values = overrides[name] { return Weight(owned: values) }
    if primaries[name] == nil, !companions.contains(name), let tensor = checkpoint.tensor(named: name),
      tensor.info.dtype == .f32
    {
      let count = tensor.info.elementCount
      let bytes = checkpoint.bytes(of: tensor)
      if bytes.count == count * MemoryLayout<Float>.size,
        let base = bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0
      {
        return Weight(mapped: UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: count))
      }
    }
    return Weight(owned: try floats(name))
  }

  /// The values of `name` when present, else nil (an optional bias, a norm).
  public func floatsIfPresent(_ name: String) throws(SwiftCompressError) -> [Float]? {
    contains(name) ? try floats(name) : nil
  }

  /// Lets the pages of tensor `name` (and of a compressed weight's companions) go: the forward pass
  /// calls it once a layer is done.
  public func release(_ name: String) {
    if let (stored, _) = primaries[name] {
      checkpoint.release(stored)
      let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
      for tensor in checkpoint.tensors where companions.contains(tensor.name) && tensor.name.hasPrefix(module + ".") {
        checkpoint.release(tensor)
      }
    } else if let tensor = checkpoint.tensor(named: name) {
      checkpoint.release(tensor)
    }
  }
}

/// A tensor's Float32 values from `ModelWeights.weight(_:)`: a view of the mapped checkpoint (a dense
/// F32 tensor, read in place) or decoded values it owns.
public struct Weight: @unchecked Sendable {
  private let owned: [Float]?
  private let mapped: UnsafeBufferPointer<Float>?

  init(owned values: [Float]) {
    owned = values
    mapped = nil
  }

  init(mapped view: UnsafeBufferPointer<Float>) {
    owned = nil
    mapped = view
  }

  /// The number of values.
  public var count: Int { mapped?.count ?? owned?.count ?? 0 }

  /// Whether the values are a view of the mapping rather than a decoded copy.
  public var isMapped: Bool { mapped != nil }

  /// Calls `body` with the values.
  public func withUnsafeBufferPointer<R, E: Error>(_ body: (UnsafeBufferPointer<Float>) throws(E) -> R) throws(E) -> R {
    if let mapped { return try body(mapped) }
    return try owned!.withUnsafeBufferPointer(body)
  }
}
