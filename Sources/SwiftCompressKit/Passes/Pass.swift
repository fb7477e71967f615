import CheckpointIO
import Foundation

/// What a pass is told about a tensor before any of its data is read: its name,
/// dtype and shape (the same record as a planned output tensor).
public typealias TensorDescriptor = PlannedTensor

/// A pass's per-tensor decision, taken from the descriptor alone.
public enum TensorDecision: Sendable, Equatable {
  /// Leave the tensor as it is, for the stated reason.
  case keep(reason: String)
  /// Replace the tensor by these outputs (one or more), in this order.
  case transform(outputs: [PlannedTensor], note: String?)
}

/// A tensor being transformed: its descriptor and its stored bytes. The bytes are a
/// view of the memory-mapped input, valid only during `transform`.
public struct TensorInput: @unchecked Sendable {
  public let descriptor: TensorDescriptor
  public let bytes: UnsafeRawBufferPointer
  /// Whether `bytes` lie in a read-only file mapping, whose pages may be dropped from the
  /// resident set and are read again from the file when touched (never for memory the
  /// process owns, where dropping a page would zero it).
  public let fileMapped: Bool
  private let lookup: (String) -> TensorInput?

  public init(
    descriptor: TensorDescriptor, bytes: UnsafeRawBufferPointer, fileMapped: Bool = false,
    lookup: @escaping (String) -> TensorInput? = { _ in nil }
  ) {
    self.descriptor = descriptor
    self.bytes = bytes
    self.fileMapped = fileMapped
    self.lookup = lookup
  }

  /// Another tensor of the same checkpoint (a quantized weight's scale, say), or nil.
  public func companion(named name: String) -> TensorInput? {
    lookup(name)
  }

  /// Number of elements (the descriptor comes from a validated file).
  public var elementCount: Int { descriptor.elementCount ?? 0 }

  /// The values as a new Float32 array (exact for every float dtype but F64).
  public func floats() -> [Float] {
    Float32Conversion.floats(bytes, dtype: descriptor.dtype, count: elementCount)
  }

  /// Whether Float32 rows can be read in place (aligned Float32 storage).
  var rowsReadInPlace: Bool {
    descriptor.dtype == .f32 && Int(bitPattern: bytes.baseAddress) % MemoryLayout<Float>.alignment == 0
  }

  /// Row `row` of `columns` values as Float32: straight from the mapping when
  /// `rowsReadInPlace`, else converted into `scratch` (at least `columns` long).
  func float32Row(_ row: Int, columns: Int, scratch: UnsafeMutableBufferPointer<Float>) -> UnsafeBufferPointer<Float> {
    let rowBytes = columns * descriptor.dtype.bitsPerElement / 8
    if rowsReadInPlace, let base = bytes.baseAddress {
      return UnsafeBufferPointer(start: (base + row * rowBytes).assumingMemoryBound(to: Float.self), count: columns)
    }
    Float32Conversion.convert(
      UnsafeRawBufferPointer(rebasing: bytes[(row * rowBytes)..<((row + 1) * rowBytes)]), dtype: descriptor.dtype,
      count: columns, into: scratch)
    return UnsafeBufferPointer(rebasing: scratch[0..<columns])
  }
}

/// The data of one output tensor.
public enum OutputData: @unchecked Sendable {
  /// The input tensor's stored bytes, unchanged. The driver copies them inside the
  /// kernel when it can, so they never pass through this process's memory.
  case input
  /// A view of the input's bytes (valid during the step that produced it).
  case borrowed(UnsafeRawBufferPointer)
  /// Bytes the pass produced.
  case owned([UInt8])

  /// The size in bytes, given the input tensor's stored size.
  public func count(inputByteCount: Int) -> Int {
    switch self {
    case .input: inputByteCount
    case .borrowed(let b): b.count
    case .owned(let a): a.count
    }
  }
}

/// How the error a transform cost is measured.
public enum Reconstruction: Sendable {
  /// The outputs hold the input's values exactly.
  case exact
  /// The dense Float32 values the outputs stand for, in the input's shape; the
  /// driver compares them with the input.
  case dense([Float])
  /// The pass measured the error itself (for example chunk by chunk).
  case measured(ErrorAccumulator)
  /// The outputs are not comparable element by element with the input.
  case notApplicable
}

/// What `transform` returns: one data buffer per planned output, in plan order.
public struct TransformResult: Sendable {
  public var outputs: [OutputData]
  public var reconstruction: Reconstruction
  /// When the pass searched for a better encoding (`--scale-search`), the error the
  /// plain round-to-nearest encoding would have cost, for the report to compare.
  public var baseline: ErrorAccumulator?
  /// What pruning did to the tensor, for the report.
  public var sparsity: SparsityInfo?
  /// Factorization by pivoted LQ: the relative error the truncated SVD would
  /// reach at the same rank (Eckart-Young), for the report to compare.
  public var optimalError: Double?

  public init(
    outputs: [OutputData], reconstruction: Reconstruction, baseline: ErrorAccumulator? = nil,
    sparsity: SparsityInfo? = nil
  ) {
    self.outputs = outputs
    self.reconstruction = reconstruction
    self.baseline = baseline
    self.sparsity = sparsity
  }
}

/// A compression pass: a stable identifier, a `Codable` configuration, a decision
/// per tensor taken before any data is read, and a transform per tensor.
///
/// Passes are values with no mutable state: `transform` may be called for
/// different tensors concurrently and must give the same bytes every time.
public protocol CompressionPass: Sendable {
  associatedtype Configuration: Codable & Sendable & Equatable

  /// Stable name used in recipes, reports and the registry.
  static var identifier: String { get }
  /// One line saying what the pass does.
  static var summary: String { get }

  var configuration: Configuration { get }

  /// Validates `configuration`.
  init(configuration: Configuration) throws(SwiftCompressError)

  /// The pass ready for `checkpoint`, before anything is planned: a pass may read the
  /// checkpoint's config.json or gather statistics over its tensors here.
  func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> Self

  /// Things the user should know about this run (shown on stderr and in the report).
  var warnings: [String] { get }

  /// Entries of the pass's own selection (ignore lists, recipe targets, excludes and
  /// overrides) that match nothing in `checkpoint`, one warning each.
  func selectionWarnings(for checkpoint: Checkpoint) -> [String]

  /// Lines for the report's notes about what the prepared pass decided for the whole model
  /// (a mixed-precision allocation); none by default.
  var notes: [String] { get }

  /// Whether the default selection (1-D, embedding and integer tensors kept) applies;
  /// a pass that must see every tensor (decompress) returns false. `--include` and
  /// `--exclude` always apply.
  var usesDefaultSelection: Bool { get }

  /// Whether a run measures the error this pass costs, which error gates (`max_error`,
  /// `min_sqnr`) need. decompress does not: it has no reference to compare with.
  var measuresError: Bool { get }

  /// Whether the tensors this pass writes, rather than those it reads, are the model's
  /// weights. decompress reads compressed tensors (codes, scales, factors) that stand for
  /// the dense weights it writes, so its parameters and bits per weight are counted over
  /// its outputs; every other pass counts its inputs.
  var countsParametersOfOutputs: Bool { get }

  // MARK: As a recipe stage

  /// The recipe stage that rebuilds this pass: its kind and every option, defaults
  /// included (the effective recipe). nil for passes recipes do not chain.
  var recipeStage: (any RecipeStageConfiguration)? { get }

  /// Why this pass plans from the input model's weights (statistics gathered in
  /// `prepared(for:)`, such as a global threshold or singular values), or nil. A recipe
  /// runs such a pass only as its first stage, with the same options for every tensor.
  var wholeModelRequirement: String? { get }

  /// Why this pass must be offered every tensor it could change, so that a recipe stage
  /// may not narrow it with targets or exclude (the reason names what to use instead), or nil.
  var allTensorsRequirement: String? { get }

  /// Why no later recipe stage can take what this pass writes (the reason says what to
  /// change), or nil.
  var chainingRefusal: String? { get }

  /// This pass and `variant`, the same recipe stage with other options for some tensors
  /// (overrides), as one: what the stage records in config.json and the output metadata
  /// covers the tensors of both. The default is this pass.
  func merged(with variant: Self) -> Self

  /// Decides, from the descriptor alone, what happens to a selected tensor.
  func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision

  /// Produces the planned outputs' data.
  func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult

  /// The pass once the plan is made: `tensors` are the input tensors it will transform
  /// (after `--include`/`--exclude` and recipe targets). A pass that records in
  /// config.json what it did keeps only these.
  func planned(transforming tensors: [TensorDescriptor]) -> Self

  /// `__metadata__` entries to add to every output file.
  var outputMetadata: [String: String] { get }

  /// The text of the model's `config.json` as the pass edits it, or nil to copy it
  /// unchanged. `outputFloatDTypes` are the dtypes of every floating-point tensor written.
  func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String?

  /// The dense values of `input` rebuilt from what this pass made of it, as a recipe
  /// chain measures the error of the whole chain: quantized outputs decode through their
  /// codec, factors multiply out, a shrunk tensor is put back in its shape. The default
  /// takes a single output's dense values.
  func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError) -> [Float]

  /// For `--explain`: how the pass decides about `tensor`, which `selection` selected,
  /// one line per decision (a recipe: one per stage, with its overrides).
  func explanation(for tensor: TensorDescriptor, selection: TensorSelection) throws(SwiftCompressError) -> [String]
}

/// What a pass made of one tensor inside a recipe chain, for `reconstruct`.
public struct ChainedOutputs {
  /// The tensors the pass planned for it.
  public let planned: [PlannedTensor]
  private let storedBytes: () throws(SwiftCompressError) -> [[UInt8]]
  private let denseValues: (Int) throws(SwiftCompressError) -> [Float]

  public init(
    planned: [PlannedTensor], bytes: @escaping () throws(SwiftCompressError) -> [[UInt8]],
    dense: @escaping (Int) throws(SwiftCompressError) -> [Float]
  ) {
    self.planned = planned
    storedBytes = bytes
    denseValues = dense
  }

  /// The outputs' bytes as written (outputs no later stage changed: quantized ones).
  public func bytes() throws(SwiftCompressError) -> [[UInt8]] { try storedBytes() }

  /// The dense values output `index` stands for once every later stage is undone.
  public func dense(_ index: Int) throws(SwiftCompressError) -> [Float] { try denseValues(index) }
}

extension CompressionPass {
  public var outputMetadata: [String: String] { [:] }

  public func planned(transforming tensors: [TensorDescriptor]) -> Self { self }

  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> Self { self }

  public var usesDefaultSelection: Bool { true }

  public var warnings: [String] { [] }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] { [] }

  public var notes: [String] { [] }

  public var measuresError: Bool { true }

  public var countsParametersOfOutputs: Bool { false }

  public var recipeStage: (any RecipeStageConfiguration)? { nil }

  public var wholeModelRequirement: String? { nil }

  public var allTensorsRequirement: String? { nil }

  public var chainingRefusal: String? { nil }

  public func merged(with variant: Self) -> Self { self }

  /// The weights an input tensor stands for, over which bits per weight are counted: its
  /// elements, or with `countsParametersOfOutputs` its outputs' (none for a companion
  /// folded into another tensor).
  func parameters(of entry: PlanEntry) -> Int {
    guard countsParametersOfOutputs else { return entry.tensor.info.elementCount }
    return entry.outputs.reduce(0) { $0 + ($1.elementCount ?? 0) }
  }

  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? { nil }

  public func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError)
    -> [Float]
  {
    guard outputs.planned.count == 1 else {
      throw .passBrokePlan(
        pass: Self.identifier, tensor: input.name, reason: "cannot decode \(outputs.planned.count) outputs")
    }
    return try outputs.dense(0)
  }

  /// The configuration as JSON, for reports and recipes.
  public var configurationJSON: String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(configuration) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }

  /// One line: how the tensor was selected, and the pass's decision with its outputs.
  public func explanation(for tensor: TensorDescriptor, selection: TensorSelection) throws(SwiftCompressError)
    -> [String]
  {
    let patterns = selection.include.isEmpty ? "default selection" : "matches --include"
    switch try plan(tensor) {
    case .keep(let reason): return ["\(patterns); \(Self.identifier) keeps it: \(reason)"]
    case .transform(let outputs, let note):
      let shown = outputs.map { "\($0.name) \($0.dtype.rawValue)\($0.shape)" }.joined(separator: ", ")
      return ["\(patterns); \(Self.identifier) -> \(shown)\(note.map { " (\($0))" } ?? "")"]
    }
  }
}

/// The passes this build knows, by identifier.
public enum PassRegistry {
  public static let passes: [any CompressionPass.Type] = [
    IdentityPass.self, CastPass.self, QuantizePass.self, PrunePass.self, FactorizePass.self, DecompressPass.self,
    LowRankResidualPass.self, RecipePass.self, RotatePass.self,
  ]

  public static var identifiers: [String] { passes.map { $0.identifier } }

  /// The pass type named `identifier`.
  public static func type(named identifier: String) throws(SwiftCompressError) -> any CompressionPass.Type {
    guard let type = passes.first(where: { $0.identifier == identifier }) else {
      throw .unknownPass(identifier, known: identifiers)
    }
    return type
  }

  /// Builds the pass named `identifier` from a JSON configuration.
  public static func make(identifier: String, configurationJSON: String) throws(SwiftCompressError)
    -> any CompressionPass
  {
    let type = try type(named: identifier)
    return try make(type, json: Data(configurationJSON.utf8))
  }

  private static func make<P: CompressionPass>(_ type: P.Type, json: Data) throws(SwiftCompressError) -> P {
    let configuration: P.Configuration
    do {
      configuration = try JSONDecoder().decode(P.Configuration.self, from: json)
    } catch {
      throw .invalidConfiguration(pass: P.identifier, reason: "\(error)")
    }
    return try P(configuration: configuration)
  }
}
