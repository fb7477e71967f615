import CheckpointIO
import Foundation
import LinearAlgebra

/// The input statistics of every linear module over the calibration tokens, gathered through
/// `ActivationObserver.observe` and written by `calibrate`.
///
/// Per module, over all tokens: the count, each input channel's sum of squares (Wanda's norm
/// ||X_j|| is its square root) and sum of absolute values, and optionally the Gram matrix XᵀX.
/// Every sum is accumulated in Double across batches and stored as F32; XᵀX's products within
/// one batch are summed in Float32 by `cblas_ssyrk` (as the reference computes all of H), then
/// added to the Double sums. Modules that read the same input (q, k and v) share one
/// accumulator.
public final class ActivationStatistics: ActivationObserver {
  /// One input's running sums.
  public final class Accumulator {
    public let columns: Int
    public var count = 0
    public var sumSquares: [Double]
    public var sumAbs: [Double]
    /// Upper triangle, row-major [columns, columns], when Gram matrices are gathered.
    public var gram: [Double]?

    init(columns: Int, gram: Bool) {
      self.columns = columns
      sumSquares = [Double](repeating: 0, count: columns)
      sumAbs = [Double](repeating: 0, count: columns)
      self.gram = gram ? [Double](repeating: 0, count: columns * columns) : nil
    }

    func add(_ x: UnsafeBufferPointer<Float>, rows: Int, scratch: inout [Float]) {
      count += rows
      sumSquares.withUnsafeMutableBufferPointer { squares in
        sumAbs.withUnsafeMutableBufferPointer { absolute in
          for r in 0..<rows {
            let base = r * columns
            for c in 0..<columns {
              let v = Double(x[base + c])
              squares[c] += v * v
              absolute[c] += abs(v)
            }
          }
        }
      }
      guard gram != nil else { return }
      gram!.withUnsafeMutableBufferPointer { g in
        accumulateGram(x, rows: rows, columns: columns, into: g, scratch: &scratch)
      }
    }

    /// `gramMatrix()`, letting the Double sums go (for a last use: the calibrated driver).
    public func takeGramMatrix() -> [Float]? {
      defer { gram = nil }
      return gramMatrix()
    }

    /// The full symmetric XᵀX as Float.
    public func gramMatrix() -> [Float]? {
      guard let gram else { return nil }
      var result = [Float](repeating: 0, count: columns * columns)
      for i in 0..<columns {
        for j in i..<columns {
          let v = Float(gram[i * columns + j])
          result[i * columns + j] = v
          result[j * columns + i] = v
        }
      }
      return result
    }
  }

  /// Whether XᵀX is gathered.
  public let gatherGram: Bool
  /// Module -> its input's accumulator.
  public private(set) var modules: [String: Accumulator] = [:]
  /// Modules in the order the forward pass first ran them.
  public private(set) var order: [String] = []
  /// Modules the statistics leave out (lm_head: `calibrate` gathers the inputs of the layers).
  public let excluded: Set<String>
  private var groups: [[String]: Accumulator] = [:]
  /// One batch's XᵀX in Float32 before it is added to the Double sums (the largest input's size).
  private var scratch: [Float] = []
  /// Forwarded `layerFinished` calls (progress).
  public var onLayer: ((Int, Int) -> Void)?

  public init(gram: Bool, excluding: Set<String> = ["lm_head"]) {
    gatherGram = gram
    excluded = excluding
  }

  public func observe(modules names: [String], inputs: UnsafeBufferPointer<Float>, rows: Int, columns: Int) {
    let names = names.filter { !excluded.contains($0) }
    guard !names.isEmpty else { return }
    let accumulator: Accumulator
    if let existing = groups[names], existing.columns == columns {
      accumulator = existing
    } else {
      accumulator = Accumulator(columns: columns, gram: gatherGram)
      groups[names] = accumulator
      for name in names where modules[name] == nil {
        modules[name] = accumulator
        order.append(name)
      }
    }
    let started = Date()
    accumulator.add(inputs, rows: rows, scratch: &scratch)
    seconds += Date().timeIntervalSince(started)
  }

  /// Time spent adding to the sums.
  public private(set) var seconds = 0.0

  /// Lets the batch scratch go (gathering is over; more batches would allocate it again).
  public func releaseScratch() { scratch = [] }

  public func layerFinished(_ index: Int, of count: Int, hidden: HiddenStates) {
    onLayer?(index, count)
  }

  /// The tensor names of module `module`'s statistics.
  public enum TensorName {
    public static func sumSquares(_ module: String) -> String { module + ".input_sum_squares" }
    public static func meanAbs(_ module: String) -> String { module + ".input_mean_abs" }
    public static func count(_ module: String) -> String { module + ".input_count" }
    public static func gram(_ module: String) -> String { module + ".input_gram" }
  }

  /// The file format's name in the metadata.
  public static let formatName = "swiftcompress-activation-statistics"
  public static let formatVersion = "1"

  /// Writes the statistics to `path` (a temporary file renamed into place), with `metadata` added
  /// to the format's own entries. Modules are written sorted by name.
  public func write(to path: String, metadata: [String: String]) throws {
    var planned: [PlannedTensor] = []
    let names = order.sorted()
    for name in names {
      let c = modules[name]!.columns
      planned.append(PlannedTensor(name: TensorName.count(name), dtype: .i64, shape: [1]))
      planned.append(PlannedTensor(name: TensorName.sumSquares(name), dtype: .f32, shape: [c]))
      planned.append(PlannedTensor(name: TensorName.meanAbs(name), dtype: .f32, shape: [c]))
      if gatherGram { planned.append(PlannedTensor(name: TensorName.gram(name), dtype: .f32, shape: [c, c])) }
    }
    var all = metadata
    all["format"] = Self.formatName
    all["format_version"] = Self.formatVersion
    all["modules"] = "\(names.count)"
    all["gram"] = gatherGram ? "true" : "false"
    let writer = try SafeTensorsWriter(destination: path, tensors: planned, metadata: all)
    do {
      for name in names {
        let a = modules[name]!
        let count = Int64(a.count).littleEndian
        try withUnsafeBytes(of: count) { try writer.write(TensorName.count(name), $0) }
        let squares = a.sumSquares.map { Float($0) }
        try squares.withUnsafeBytes { try writer.write(TensorName.sumSquares(name), $0) }
        let meanAbs = a.sumAbs.map { Float(a.count > 0 ? $0 / Double(a.count) : 0) }
        try meanAbs.withUnsafeBytes { try writer.write(TensorName.meanAbs(name), $0) }
        if let gram = a.gramMatrix() {
          try gram.withUnsafeBytes { try writer.write(TensorName.gram(name), $0) }
        }
      }
      try writer.finish()
    } catch {
      writer.abandon()
      throw error
    }
  }

  /// A fingerprint of a model's weights: zlib CRC-32 of each safetensors file's whole content,
  /// combined as the CRC-32 of the text "name:size:crc\n" per file (sorted by name).
  public static func fingerprint(of checkpoint: Checkpoint) throws(CheckpointError) -> String {
    var text = ""
    for file in checkpoint.files.map(\.path).sorted() {
      let (bytes, crc) = try Manifest.checksum(path: file)
      text += "\((file as NSString).lastPathComponent):\(bytes):\(String(format: "%08x", crc))\n"
    }
    return Array(text.utf8).withUnsafeBytes { "crc32:" + Manifest.hexCRC($0) }
  }
}
