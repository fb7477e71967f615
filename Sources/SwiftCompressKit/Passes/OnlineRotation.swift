import CheckpointIO
import Foundation
import LinearAlgebra

/// The online, block-wise Hadamard rotation of MR-GPTQ (Egiazarian et al. 2025, "Bridging the
/// Gap Between Promise and Performance for Microscaling FP4 Quantization", arXiv 2509.23202),
/// written as compressed-tensors' `transform_config` (the `hadamard` transform QuIP's "v"
/// scheme writes, `head_dim` = the block).
///
/// Every targeted linear module (every `Linear` not in `ignore`) reads its input rotated,
/// `x R`, where `R = diag(H_b, ..., H_b)` is block-diagonal with `H_b` the normalised Sylvester
/// Hadamard matrix of order `b` (`Hadamard.matrix`, scipy's order, compressed-tensors'
/// `deterministic_hadamard_matrix(b) / sqrt(b)`). Its weight is stored rotated, `W R`, so that
/// `(x R)(W R)ᵀ = x Wᵀ` (`R` is symmetric and orthogonal): quantizing `W R` spreads an outlier
/// input over its block. vLLM applies `x R` at run time (the `input` entry); the `weight_input`
/// entry records that the weights hold `W R` already. `decompress` multiplies `R` back
/// (`W R R = W`), so its dense model computes what vLLM computes.
public struct OnlineRotation: Sendable, Equatable {
  /// The blocks offered: powers of two (compressed-tensors' `hadamard` type needs one) from
  /// NVFP4's group of 16 to the integer schemes' default group of 128.
  public static let blockSizes = [16, 32, 64, 128]
  /// The config group name (QuIP's input rotation, "v").
  public static let schemeName = "v"
  /// The module the rotation's matrix is saved under is `<module>.v_input`.
  public static let transformModuleSuffix = "." + schemeName + "_input"

  /// The block size `b`.
  public let block: Int

  public init(block: Int) throws(SwiftCompressError) {
    guard Self.blockSizes.contains(block) else {
      throw .invalidOption(
        option: "--rotate",
        reason:
          "block-hadamard block \(block) is not one of \(Self.blockSizes.map(String.init).joined(separator: ", ")) (compressed-tensors' hadamard transform needs a power of two)"
      )
    }
    self.block = block
  }

  /// A rotation of any power-of-two block, as a checkpoint written elsewhere may record.
  init(reading block: Int) {
    self.block = block
  }

  /// Why a rotation block `block` and quantization groups of `groupSize` inputs (0: one
  /// scale per output channel) do not fit together, or nil when they do. The rule: one must
  /// divide the other, so that every group holds whole blocks (the group mixes rotated values
  /// of its own blocks only) or every block holds whole groups (each group's values come from
  /// one block). A block straddling two groups would make each group's scale depend on
  /// inputs of the neighbouring group.
  public static func groupMismatch(block: Int, groupSize: Int) -> String? {
    guard groupSize > 0, groupSize % block != 0, block % groupSize != 0 else { return nil }
    return
      "a rotation block of \(block) and quantization groups of \(groupSize) inputs do not nest (one must divide the other): choose a group size that is a multiple or a divisor of \(block), or another block"
  }

  /// `values` (rows of `rowLength`, a multiple of `block`) times `R`, in place. `R` is its
  /// own inverse, so the same call rotates a weight into the stored basis and back.
  public func apply(_ values: inout [Float], rowLength: Int) {
    precondition(rowLength % block == 0, "OnlineRotation: rows of \(rowLength) are not blocks of \(block)")
    Hadamard.transformRows(&values, length: block)
  }

  /// `values` (rows of `rowLength`) times `R` computed in Double and rounded once to Float,
  /// as the reference fuses a rotation into a weight (float64, then the weight's dtype): the
  /// fused weights are then the reference's to the last bit but for rare ties.
  public func fuse(_ values: inout [Float], rowLength: Int) {
    precondition(rowLength % block == 0, "OnlineRotation: rows of \(rowLength) are not blocks of \(block)")
    let scale = 1 / Double(block).squareRoot()
    var work = [Double](repeating: 0, count: block)
    var start = 0
    while start < values.count {
      for j in 0..<block { work[j] = Double(values[start + j]) }
      var half = 1
      while half < block {
        var first = 0
        while first < block {
          for j in first..<(first + half) {
            let (a, b) = (work[j], work[j + half])
            work[j] = a + b
            work[j + half] = a - b
          }
          first += 2 * half
        }
        half *= 2
      }
      for j in 0..<block { values[start + j] = Float(work[j] * scale) }
      start += block
    }
  }

  /// `R G R` for a symmetric `n x n` matrix `G` (row-major), as GPTQ's second moment of
  /// rotated inputs: `(X R)ᵀ (X R) = R XᵀX R` (`Rᵀ = R`).
  public func conjugated(_ gram: [Float], size n: Int) -> [Float] {
    var rows = gram
    apply(&rows, rowLength: n)  // G R
    var transposed = [Float](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { transposed[j * n + i] = rows[i * n + j] } }
    apply(&transposed, rowLength: n)  // (G R)ᵀ R = R G R
    // Symmetric up to rounding: keep it exactly symmetric.
    for i in 0..<n {
      for j in (i + 1)..<n {
        let mean = (transposed[i * n + j] + transposed[j * n + i]) / 2
        transposed[i * n + j] = mean
        transposed[j * n + i] = mean
      }
    }
    return transposed
  }

  /// The `transform_config` compressed-tensors 0.20 writes for QuIPModifier(rotations: ["v"],
  /// transform_type: "hadamard", transform_block_size: block, ignore: ignore).
  public func transformConfig(ignore: [String]) -> JSONValue {
    let ignored = JSONValue.array(ignore.map { .string($0) })
    func entry(_ location: String, inverse: Bool) -> JSONValue {
      .object([
        JSONMember("ignore", ignored), JSONMember("inverse", .bool(inverse)),
        JSONMember("location", .string(location)), JSONMember("targets", .array([.string("Linear")])),
      ])
    }
    let scheme = JSONValue.object([
      JSONMember("apply", .array([entry("input", inverse: false), entry("weight_input", inverse: true)])),
      JSONMember("head_dim", .number(String(block))), JSONMember("precision", .string("torch.float64")),
      JSONMember("randomize", .bool(false)), JSONMember("requires_grad", .bool(false)),
      JSONMember("type", .string("hadamard")),
    ])
    return .object([JSONMember("config_groups", .object([JSONMember(Self.schemeName, scheme)]))])
  }

  /// The rotation's matrix as the reference saves it once per model (the online transforms
  /// share it): `H_b` unnormalised (±1), F64 (the scheme's precision), row-major, under
  /// `<first targeted module>.v_input.weight`. vLLM loads it and divides by `sqrt(b)`.
  public var matrixBytes: [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(block * block * 8)
    for i in 0..<block {
      for j in 0..<block {
        let value: Double = (i & j).nonzeroBitCount % 2 == 0 ? 1 : -1
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
      }
    }
    return bytes
  }

  /// The tensor holding the matrix, for `module`.
  public static func matrixName(module: String) -> String { module + transformModuleSuffix + ".weight" }

  /// Whether `name` is a saved transform matrix (`<module>.<group>_input.weight` or
  /// `_output.weight`, square), which is no model weight.
  static func isTransformMatrix(_ name: String, shape: [Int]) -> Bool {
    guard shape.count == 2, shape[0] == shape[1], name.hasSuffix(".weight") else { return false }
    let module = name.dropLast(".weight".count)
    guard let last = module.split(separator: ".").last, module.contains(".") else { return false }
    return last.hasSuffix("_input") || last.hasSuffix("_output")
  }

  /// The rotation a `quantization_config` records in `transform_config`, with the ignore
  /// rules of its targets; nil when it records none (absent or `{}`). Throws for a
  /// transform this reader does not apply (another type, location or target), since
  /// decoding the weights without it would give a wrong model.
  static func recorded(in quantization: JSONValue?, path: String) throws(SwiftCompressError) -> (
    rotation: OnlineRotation, ignore: [IgnoreRule]
  )? {
    guard let transform = quantization?["transform_config"], let groups = transform["config_groups"]?.members,
      !groups.isEmpty
    else { return nil }
    func unsupported(_ what: String) -> SwiftCompressError {
      .invalidFile(
        path: path,
        reason:
          "its quantization_config.transform_config holds \(what); swiftcompress applies only the online block-wise hadamard input rotation it writes (one group: type 'hadamard', head_dim a power of two, apply 'input' and 'weight_input' with inverse on targets ['Linear']); load it with vLLM, or with compressed-tensors' apply_transform_config"
      )
    }
    guard groups.count == 1, let scheme = groups.first?.value else { throw unsupported("\(groups.count) groups") }
    guard scheme["type"]?.stringValue == "hadamard" else {
      throw unsupported("a '\(scheme["type"]?.stringValue ?? "?")' transform")
    }
    guard scheme["randomize"] != .bool(true) else { throw unsupported("a randomized transform") }
    // Written here: 16 to 128; read: any power of two (a null head_dim, one rotation of each
    // module's whole input, is not read).
    guard let head = scheme["head_dim"]?.uint64Value.map(Int.init), head > 1, Hadamard.isPowerOfTwo(head) else {
      throw unsupported("head_dim \(scheme["head_dim"].map { "\($0)" } ?? "none")")
    }
    let apply = scheme["apply"]?.arrayValue ?? []
    let locations = apply.map { ($0["location"]?.stringValue ?? "?", $0["inverse"] == .bool(true)) }
    guard apply.count == 2, locations.contains(where: { $0 == ("input", false) }),
      locations.contains(where: { $0 == ("weight_input", true) })
    else { throw unsupported("apply locations \(locations.map(\.0))") }
    var ignore: [String]?
    for entry in apply {
      guard entry["targets"]?.arrayValue?.compactMap(\.stringValue) == ["Linear"] else {
        throw unsupported("targets other than ['Linear']")
      }
      let names = entry["ignore"]?.arrayValue?.compactMap(\.stringValue) ?? []
      if let ignore, ignore != names { throw unsupported("different ignore lists for its two entries") }
      ignore = names
    }
    var rules: [IgnoreRule] = []
    for name in ignore ?? [] {
      guard let rule = try? IgnoreRule(name) else { throw unsupported("an ignore entry '\(name)' it cannot read") }
      rules.append(rule)
    }
    return (OnlineRotation(reading: head), rules)
  }
}

/// A quantized layout whose modules read their input through an `OnlineRotation`: the
/// stored weights are `W R`, and decoding multiplies `R` back, so that `decompress`, `diff`
/// and `evaluate` see the weights in the original basis (`(W R) R = W`), the model vLLM
/// computes. The saved rotation matrix (`<module>.v_input.weight`) is read with the weights
/// and not written on its own.
struct OnlineRotationCodec: WeightCodec {
  let base: any WeightCodec
  let rotation: OnlineRotation
  /// The transform's ignore rules: modules whose input is not rotated.
  let ignore: [IgnoreRule]

  var layoutName: String { base.layoutName + ", block-\(rotation.block) hadamard input rotation" }

  func rotates(_ weight: DenseWeight) -> Bool {
    guard weight.shape.count == 2, let module = LinearWeights.module(of: weight.name) else { return false }
    return !ignore.contains { $0.matches(module) }
  }

  func densePrimary(_ stored: TensorDescriptor) throws(SwiftCompressError) -> DenseWeight? {
    guard var weight = try base.densePrimary(stored) else { return nil }
    if rotates(weight) { weight.note += ", rotation undone (x R)" }
    return weight
  }

  func isCompanion(_ stored: TensorDescriptor) -> Bool {
    base.isCompanion(stored) || OnlineRotation.isTransformMatrix(stored.name, shape: stored.shape)
  }

  func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    var values = try base.decode(primary, as: weight)
    guard rotates(weight) else { return values }
    guard weight.shape[1] % rotation.block == 0 else {
      throw .invalidTensor(
        name: primary.descriptor.name,
        reason:
          "its input dimension \(weight.shape[1]) is not a multiple of transform_config's head_dim \(rotation.block), so the rotation cannot be undone; the checkpoint is inconsistent"
      )
    }
    rotation.apply(&values, rowLength: weight.shape[1])
    return values
  }

  func exactBytes(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [UInt8]? {
    rotates(weight) ? nil : try base.exactBytes(primary, as: weight)
  }
}

extension OnlineRotation {
  /// What `verify` warns about a checkpoint whose `quantization_config` records online
  /// transforms: transformers 5.x loads it without applying them (wrong outputs).
  public static func loadingWarnings(_ checkpoint: Checkpoint) -> [String] {
    let quantization = LoaderContract.config(of: checkpoint)?["quantization_config"]
    guard let groups = quantization?["transform_config"]?["config_groups"]?.members, !groups.isEmpty else {
      return []
    }
    let path = LoaderContract.configPath(of: checkpoint)
    do {
      guard let (rotation, _) = try recorded(in: quantization, path: path) else { return [] }
      return [
        "quantization_config.transform_config records an online block-\(rotation.block) hadamard rotation of the linear modules' inputs: vLLM applies it, but transformers 5.x does not (it loads the weights, which hold W R, and computes wrong outputs); for a model transformers computes correctly, run 'swiftcompress decompress' (it multiplies the rotation back)"
      ]
    } catch {
      return [
        "quantization_config.transform_config records online transforms (\(groups.map(\.key).joined(separator: ", "))) that transformers 5.x does not apply and swiftcompress cannot undo: \(error.localizedDescription)"
      ]
    }
  }
}
