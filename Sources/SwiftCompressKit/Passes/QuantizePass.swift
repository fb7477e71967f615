import CheckpointIO
import Foundation

/// Weight quantization in the compressed-tensors layouts, bit for bit as llm-compressor
/// 0.14's `model_free_ptq` with compressed-tensors 0.20 writes them.
///
/// The pass decides which weights are quantized (linear weights not ignored), how scales
/// are chosen (`scaleSearch`), and for the layouts with a scale shared across modules
/// (NVFP4) that scale; the scheme's codec (`Codecs/CompressedTensors/`) owns the tensor
/// layout, the arithmetic and the `quantization_config` fragment.
///
/// An FP8 (`float-quantized`) input is dequantized (weight x scale, in the scale's dtype)
/// before it is quantized; any other compressed input is refused.
public struct QuantizePass: CompressionPass {
  public static let identifier = "quantize"
  public static let summary = "integer group quantization in the compressed-tensors pack-quantized layout"
  public private(set) var configuration: Configuration
  /// The codec of the scheme, with the configured group size.
  let codec: any QuantizationCodec
  /// The scheme of each module the allocation (`configuration.target`) chose, from
  /// `prepared(for:)`; it overrides `schemeFor` and the default.
  var assigned: [String: SchemeChoice] = [:]
  /// The sensitivity the allocation uses, measured beforehand by the command (the model's own
  /// loss on data, `Sensitivity.ModelLoss`); nil: measured in `prepared(for:)`.
  public var measuredSensitivity: Sensitivity?
  /// Makes the allocation use `sensitivity` (measured beforehand) and its candidates.
  public mutating func allocate(with sensitivity: Sensitivity) {
    measuredSensitivity = sensitivity
    configuration.candidates = sensitivity.candidates
  }

  /// The allocation's summary for the report's notes, from `prepared(for:)`.
  public var allocationNote: String?
  /// The modules the plan quantizes and their schemes, in checkpoint order, from
  /// `planned(transforming:)`: config.json's config groups are written from them.
  var written: [(module: String, choice: SchemeChoice)]?
  /// Whether a quantized weight is F32, from `planned(transforming:)`.
  var writtenFloat32 = false
  let ignoreRules: [IgnoreRule]
  /// Global scales by module, from `prepared(for:)`, for a codec that shares one.
  var globalScales: [String: Float] = [:]
  /// The largest magnitude of each weight whose codec shares a global scale, and the dtype
  /// it is quantized from, from `prepared(for:)`.
  var absMaxima: [String: (amax: Float, dtype: DType)] = [:]
  /// The checkpoint's model adapter (which modules share an input), from `prepared(for:)`.
  var model: any ModelAdapter = ModelAdapters.generic
  /// FP8 input weights by module, from `prepared(for:)`.
  var fp8Sources: [String: Float8Input] = [:]
  /// The outputs GPTQ computed layer by layer (`GPTQMethod`), written instead of
  /// round-to-nearest's for the weights they hold.
  public var calibrated: CalibratedOutputs?
  /// Set by a command that will calibrate before running (and for its dry runs), so that
  /// `prepared(for:)` does not refuse GPTQ.
  public var calibrationPending = false
  /// The online block-wise Hadamard rotation of every quantized module's input
  /// (`configuration.rotationBlock`), nil for none.
  public let rotation: OnlineRotation?
  /// The module whose `v_input.weight` holds the rotation's matrix (the first rotated module
  /// in forward order, as the reference saves it), from `prepared(for:)`.
  var matrixModule: String?

  public var notes: [String] { (allocationNote.map { [$0] } ?? []) + (loadingNote.map { [$0] } ?? []) }

  /// A note for an F32 checkpoint mixing integer and FP4 groups, which transformers with
  /// compressed-tensors 0.20 loads only in BF16 (docs/loading.md#mixed-precision).
  var loadingNote: String? {
    guard let written, writtenFloat32 else { return nil }
    let formats = Set(written.compactMap { $0.choice.codec?.format })
    guard formats.contains("pack-quantized"), formats.contains(where: { $0.contains("fp4") }) else { return nil }
    return
      "F32 weights with integer and FP4 config groups: transformers with compressed-tensors 0.20 loads this checkpoint only in BF16 (it decodes FP4 to BF16), rounding the integer groups' F32 scales to BF16; decompress and the model-free dequantizer are exact"
  }

  public var warnings: [String] {
    (calibrated?.summary?.warnings ?? []) + fp8Warnings
  }

  private var fp8Warnings: [String] {
    fp8Sources.isEmpty
      ? []
      : [
        "the input holds \(Format.count(fp8Sources.count, "FP8 weight")): each is dequantized (weight x scale) before quantizing, and errors are measured against the dequantized values"
      ]
  }

  public init(configuration: Configuration) throws(SwiftCompressError) {
    let multiple = IntegerPackCodec.groupMultiple(bits: configuration.scheme.bits)
    guard
      configuration.scheme.fixedGrouping != nil
        || (configuration.groupSize >= 0 && configuration.groupSize % multiple == 0)
    else {
      throw .invalidConfiguration(
        pass: Self.identifier,
        reason: "group size \(configuration.groupSize) must be a positive multiple of \(multiple)")
    }
    self.configuration = configuration
    codec = configuration.scheme.codec(groupSize: configuration.groupSize)
    if configuration.isMixed, configuration.rotationBlock != nil {
      throw .invalidOption(
        option: "--rotate",
        reason:
          "block-hadamard cannot be combined with --scheme-for or a target size yet: transform_config is recorded for one scheme; quantize with one scheme"
      )
    }
    if configuration.isMixed, configuration.method != .rtn, configuration.target != nil {
      throw .invalidOption(
        option: "--target-bpw",
        reason:
          "the allocation estimates round-to-nearest's error; use it with --method rtn, or pass its choices to GPTQ with --scheme-for"
      )
    }
    if let block = configuration.rotationBlock {
      let rotation = try OnlineRotation(block: block)
      if let mismatch = OnlineRotation.groupMismatch(block: block, groupSize: Self.groupSize(of: codec)) {
        throw .invalidOption(option: "--rotate", reason: mismatch)
      }
      self.rotation = rotation
    } else {
      rotation = nil
    }
    ignoreRules = try configuration.ignore.map { (entry) throws(SwiftCompressError) in try IgnoreRule(entry) }
  }

  /// Refuses an input that is already compressed, except FP8, whose weights are
  /// dequantized first; for a codec that shares a global scale (NVFP4), chooses it before
  /// any tensor is written: one per set of modules reading the same input (q/k/v, gate/up,
  /// as vLLM requires), g = 2688 x (1 / amax) over the set, computed as PyTorch does
  /// (reciprocal, then product, each rounded to the weight's dtype). This reads every
  /// weight to be quantized once, chunk by chunk. `--include`/`--exclude` are not seen
  /// here: an excluded partner still counts towards its set's amax.
  public func prepared(for checkpoint: Checkpoint) throws(SwiftCompressError) -> QuantizePass {
    if configuration.method != .rtn, calibrated == nil, !calibrationPending {
      throw .invalidOption(
        option: "--data",
        reason:
          "\(configuration.method.rawValue) needs calibration data (give --data or --tokens; recipes cannot give it yet)"
      )
    }
    var pass = self
    pass.fp8Sources = try Float8Input.sources(checkpoint)
    pass.model = ModelAdapters.adapter(for: checkpoint)
    if rotation != nil { try pass.prepareRotation(checkpoint) }
    if configuration.target != nil { try pass.allocate(checkpoint) }
    let sharing = ([configuration.defaultChoice] + configuration.schemeFor.map(\.choice) + pass.assigned.values)
    guard sharing.contains(where: { $0.codec?.sharesGlobalScale == true }) else { return pass }
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      guard case .transform = try pass.plan(descriptor), let module = LinearWeights.module(of: tensor.name),
        pass.choice(ofModule: module).codec?.sharesGlobalScale == true
      else {
        continue
      }
      let input = TensorInput(descriptor: descriptor, bytes: checkpoint.bytes(of: tensor)) { name in
        checkpoint.tensor(named: name).map {
          TensorInput(descriptor: TensorDescriptor($0.info), bytes: checkpoint.bytes(of: $0))
        }
      }
      let amax: Float
      if let source = pass.fp8Sources[module] {
        amax = try source.dense(input).reduce(0) { max($0, abs($1)) }
      } else if let rotation {
        // The global scale of what is quantized: the rotated weight.
        amax = try pass.rotated(input, rotation).reduce(0) { max($0, abs($1)) }
      } else {
        amax = RowLoops.absMax(input)
      }
      checkpoint.release(tensor)
      pass.absMaxima[module] = (amax, pass.fp8Sources[module]?.dtype ?? tensor.info.dtype)
    }
    pass.globalScales = Self.sharedGlobalScales(pass.absMaxima, model: pass.model)
    return pass
  }

  /// One global scale per set of modules sharing an input, from the largest magnitude of
  /// each module's weight: g = 2688 x (1 / amax) over the set, in each weight's dtype.
  static func sharedGlobalScales(_ absMaxima: [String: (amax: Float, dtype: DType)], model: any ModelAdapter)
    -> [String: Float]
  {
    var amaxBySet: [String: Float] = [:]
    for (module, entry) in absMaxima {
      let set = model.scaleSharingGroup(ofModule: module)
      amaxBySet[set] = max(amaxBySet[set] ?? 0, entry.amax)
    }
    return absMaxima.reduce(into: [:]) { scales, entry in
      let amax = amaxBySet[model.scaleSharingGroup(ofModule: entry.key)] ?? 0
      scales[entry.key] = NVFP4Codec.globalScale(amax: amax, dtype: entry.value.dtype)
    }
  }

  public func selectionWarnings(for checkpoint: Checkpoint) -> [String] {
    unmatchedWarnings(checkpoint) + splitSets(checkpoint)
  }

  /// `ignore` entries and `--scheme-for` rules that match nothing. A rule is matched against
  /// `<module>.weight`, factors of factorize included.
  func unmatchedWarnings(_ checkpoint: Checkpoint) -> [String] {
    let weights = checkpoint.tensors.compactMap {
      (LinearWeights.module(of: $0.name) ?? factorModule($0.name)).map { $0 + ".weight" }
    }
    let rules = configuration.schemeFor.filter { rule in !weights.contains(where: rule.matches) }.map {
      "--scheme-for '\($0)' matches no weight of the input"
    }
    return IgnoreRule.unmatched(ignoreRules, in: checkpoint) + rules
  }

  /// With `--scheme-for`: a warning for each set of modules vLLM fuses into one layer (q/k/v,
  /// gate/up) whose members get different schemes, which vLLM refuses (transformers loads them).
  func splitSets(_ checkpoint: Checkpoint) -> [String] {
    guard !configuration.schemeFor.isEmpty else { return [] }
    return Self.splitSets(checkpoint, model: model, by: "--scheme-for gives", quantized: quantizedModule)
  }

  /// The module `tensor` is the weight of, and the scheme it is stored as (`keep` for a
  /// weight the pass leaves as it is, `--ignore` included); nil for a tensor that is no
  /// module's weight.
  func quantizedModule(_ tensor: TensorDescriptor) -> (module: String, choice: SchemeChoice)? {
    guard
      case .module(let module)? = try? LinearWeights.select(
        tensor, ignoring: ignoreRules, verb: "quantized", model: model)
    else { return LinearWeights.module(of: tensor.name).map { ($0, .keep) } }
    return (module, choice(ofModule: module))
  }

  /// A warning for each set of modules vLLM fuses into one layer whose members `quantized`
  /// stores with different schemes (nil: not quantized); `by` says what chose them.
  static func splitSets(
    _ checkpoint: Checkpoint, model: any ModelAdapter, by chooser: String,
    quantized: (TensorDescriptor) -> (module: String, choice: SchemeChoice)?
  ) -> [String] {
    var order: [String] = []
    var members: [String: [(module: String, choice: SchemeChoice)]] = [:]
    for tensor in checkpoint.tensors {
      guard let member = quantized(TensorDescriptor(tensor.info)),
        let set = model.fusedModules(of: member.module)?.name
      else { continue }
      if members[set] == nil { order.append(set) }
      members[set, default: []].append(member)
    }
    return order.compactMap { set in
      guard let list = members[set], Set(list.map(\.choice)).count > 1 else { return nil }
      return
        "\(chooser) the modules vLLM fuses into \(set) different schemes (\(list.map { "\($0.module): \($0.choice)" }.joined(separator: ", "))): vLLM refuses such a checkpoint (transformers loads it); give them one scheme"
    }
  }

  /// The scheme `module`'s weight is stored as: the allocation's choice, else the last
  /// `--scheme-for` rule whose expression is found in `<module>.weight`, else the default.
  public func choice(ofModule module: String) -> SchemeChoice {
    if let chosen = assigned[module] { return chosen }
    let name = module + ".weight"
    return configuration.schemeFor.last(where: { $0.matches(name) })?.choice ?? configuration.defaultChoice
  }

  /// The codec storing `module`'s weight (the default codec for a module that is kept).
  func codec(ofModule module: String?) -> any QuantizationCodec {
    guard configuration.isMixed, let module else { return codec }
    return choice(ofModule: module).codec ?? codec
  }

  public func plan(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    if let module = QuantizedNames.weight(of: tensor.name, suffix: "_scale").flatMap(LinearWeights.module(of:)),
      fp8Sources[module] != nil
    {
      return .transform(outputs: [], note: "FP8 scale folded into the dequantized weight")
    }
    if let module = LinearWeights.module(of: tensor.name), let source = fp8Sources[module], tensor.dtype == .f8E4M3 {
      // Plan as the dense weight it stands for; a module left unquantized is written dense.
      let dense = PlannedTensor(name: tensor.name, dtype: source.dtype, shape: tensor.shape)
      switch try planDense(dense) {
      case .keep(let reason):
        return .transform(outputs: [dense], note: "FP8 dequantized (\(reason))")
      case let decision:
        return decision
      }
    }
    return try planDense(tensor)
  }

  private func planDense(_ tensor: TensorDescriptor) throws(SwiftCompressError) -> TensorDecision {
    switch try LinearWeights.select(tensor, ignoring: ignoreRules, verb: "quantized", factors: true, model: model) {
    case .keep(let reason): return .keep(reason: reason)
    case .module(let module):
      let choice = choice(ofModule: module)
      guard let codec = choice.codec else {
        return .keep(reason: assigned[module] != nil ? "kept by the allocation" : "kept by --scheme-for")
      }
      // Outputs are named after the weight: <module>.weight_packed, or for a factor of
      // factorize, <module>.weight_a_packed.
      var (outputs, note) = try codec.layout(of: tensor, module: module)
      if let rotation {
        guard tensor.shape.count == 2, tensor.shape[1] % rotation.block == 0 else {
          throw .invalidTensor(
            name: tensor.name,
            reason:
              "its input dimension \(tensor.shape.last ?? 0) is not a multiple of the rotation block \(rotation.block): choose a block that divides every rotated module's input dimension, or --ignore \(module)"
          )
        }
        note = "W R (block-\(rotation.block) hadamard), " + note
        if module == matrixModule {
          outputs.append(
            PlannedTensor(
              name: OnlineRotation.matrixName(module: module), dtype: .f64, shape: [rotation.block, rotation.block]))
          note += "; the rotation's matrix (shared by every module) is saved with it"
        }
      }
      return .transform(outputs: outputs, note: "\(choice.label), \(note)")
    }
  }

  /// The scale group of `codec` along the inputs: the configured group, a fixed scheme's
  /// group (MXFP4 32, NVFP4 16, FP8_BLOCK's 128-column blocks), 0 for one per output channel.
  public static func groupSize(of codec: any QuantizationCodec) -> Int {
    let arguments = Dictionary(codec.weightArguments.map { ($0.key, $0.value) }) { first, _ in first }
    if let group = arguments["group_size"]?.uint64Value { return Int(group) }
    if let blocks = arguments["block_structure"]?.arrayValue, blocks.count == 2, let columns = blocks[1].uint64Value {
      return Int(columns)
    }
    return 0
  }

  /// The checks and choices of the online rotation: a config.json to record it in, a dense
  /// input, no tied head rotated, and the module its matrix is saved under.
  mutating func prepareRotation(_ checkpoint: Checkpoint) throws(SwiftCompressError) {
    guard LoaderContract.hasConfigFile(checkpoint) else {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "has no config.json: the online rotation is recorded in config.json's quantization_config.transform_config, which vLLM reads; give the model's folder with its config.json (or rotate offline with --rotate hadamard)"
      )
    }
    if !fp8Sources.isEmpty {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason:
          "holds FP8 weights: the online rotation starts from dense weights; run 'swiftcompress decompress' first")
    }
    let config = LoaderContract.config(of: checkpoint)
    var selected: [String] = []
    for tensor in checkpoint.tensors {
      guard case .transform = try plan(TensorDescriptor(tensor.info)) else { continue }
      guard let module = LinearWeights.module(of: tensor.name), tensor.name == module + ".weight" else {
        throw .invalidTensor(
          name: tensor.name,
          reason:
            "is a factor of a factorized weight, and transform_config rotates whole linear modules' inputs: quantize without --rotate block-hadamard, or decompress first"
        )
      }
      selected.append(module)
    }
    if config?["tie_word_embeddings"] == .bool(true), let head = model.model.head?.name, selected.contains(head) {
      throw .invalidModule(
        name: head,
        reason:
          "is tied to the embedding (tie_word_embeddings), and rotating its input would rotate the embedding too: add --ignore \(head)"
      )
    }
    let order = model.model.linearModules.map(\.name)
    matrixModule = order.first(where: selected.contains) ?? selected.first
  }

  /// The dense weight `input` times the rotation, in Float32.
  func rotated(_ input: TensorInput, _ rotation: OnlineRotation) throws(SwiftCompressError) -> [Float] {
    var values = input.floats()
    guard input.descriptor.shape.count == 2 else {
      throw .passBrokePlan(pass: Self.identifier, tensor: input.descriptor.name, reason: "a rotated weight must be 2-D")
    }
    rotation.fuse(&values, rowLength: input.descriptor.shape[1])
    return values
  }

  /// `result` with the rotation's matrix appended when the plan saves it with this weight.
  func appendingMatrix(_ result: TransformResult, outputs: [PlannedTensor]) -> TransformResult {
    guard let rotation, outputs.count == result.outputs.count + 1,
      outputs.last?.name.hasSuffix(OnlineRotation.transformModuleSuffix + ".weight") == true
    else { return result }
    var result = result
    result.outputs.append(.owned(rotation.matrixBytes))
    return result
  }

  public func transform(_ input: TensorInput, outputs: [PlannedTensor]) throws(SwiftCompressError) -> TransformResult {
    if outputs.isEmpty {  // an FP8 input scale, folded into its dequantized weight
      return TransformResult(outputs: [], reconstruction: .notApplicable)
    }
    if configuration.method != .rtn {
      guard let calibrated else {
        throw .passBrokePlan(
          pass: Self.identifier, tensor: input.descriptor.name,
          reason:
            "\(configuration.method.rawValue) computed no values for it (it needs calibration data: --data or --tokens)"
        )
      }
      // Else a module outside the layers the calibration runs through: rounded to nearest (the run warned).
      if let stored = try calibrated.result(for: input.descriptor.name) {
        return appendingMatrix(stored, outputs: outputs)
      }
    }
    // A factor of factorize (`<module>.weight_a`) is stored with its module's scheme but
    // chooses its own global scale, from its own amax.
    let module = LinearWeights.module(of: input.descriptor.name)
    let codec = codec(ofModule: module ?? factorModule(input.descriptor.name))
    let context = QuantizationContext(
      scaleSearch: configuration.scaleSearch, globalScale: module.flatMap { globalScales[$0] })
    if codec.sharesGlobalScale, let module, context.globalScale == nil {
      throw .passBrokePlan(
        pass: Self.identifier, tensor: input.descriptor.name, reason: "no global scale for \(module)")
    }
    if let rotation {
      // W R, rounded to the weight's dtype (as the reference fuses it), then quantized.
      let bytes = DenseCodec.encode(try rotated(input, rotation), as: input.descriptor.dtype)
      let result: Result<TransformResult, SwiftCompressError> = bytes.withUnsafeBytes { raw in
        Result { () throws(SwiftCompressError) -> TransformResult in
          try codec.encode(TensorInput(descriptor: input.descriptor, bytes: raw), context: context)
        }
      }
      return appendingMatrix(try result.get(), outputs: outputs)
    }
    guard let module, let source = fp8Sources[module], input.descriptor.dtype == .f8E4M3 else {
      return try codec.encode(input, context: context)
    }
    let bytes = DenseCodec.encode(try source.dense(input), as: source.dtype)
    if outputs.count == 1, outputs[0].dtype == source.dtype, outputs[0].name == input.descriptor.name {
      // A module left unquantized: written dense.
      return TransformResult(outputs: [.owned(bytes)], reconstruction: .notApplicable)
    }
    let descriptor = PlannedTensor(name: input.descriptor.name, dtype: source.dtype, shape: input.descriptor.shape)
    let result: Result<TransformResult, SwiftCompressError> = bytes.withUnsafeBytes { raw in
      Result { () throws(SwiftCompressError) -> TransformResult in
        try codec.encode(TensorInput(descriptor: descriptor, bytes: raw), context: context)
      }
    }
    return try result.get()
  }

  /// Quantized outputs are final in a recipe chain: the codec decodes them.
  public func reconstruct(_ input: TensorDescriptor, from outputs: ChainedOutputs) throws(SwiftCompressError)
    -> [Float]
  {
    let codec = codec(ofModule: LinearWeights.module(of: input.name) ?? factorModule(input.name))
    var values = try codec.decode(outputs: outputs.planned, data: try outputs.bytes(), shape: input.shape)
    if let rotation, input.shape.count == 2 { rotation.apply(&values, rowLength: input.shape[1]) }
    return values
  }

  /// config.json with `quantization_config`, written as llm-compressor writes it
  /// (sorted keys, two-space indent, no final newline).
  public func editedConfig(_ config: JSONValue, outputFloatDTypes: Set<DType>) -> String? {
    config.setting("quantization_config", to: quantizationConfig).map { JSONText.pretty($0, trailingNewline: false) }
  }

  /// The module of a factor of factorize (`<module>.weight_a`, `.weight_b`).
  func factorModule(_ name: String) -> String? {
    [".weight_a", ".weight_b"].first(where: name.hasSuffix).map { String(name.dropLast($0.count)) }
  }

  public func planned(transforming tensors: [TensorDescriptor]) -> QuantizePass {
    var pass = self
    var seen: Set<String> = []
    var written: [(module: String, choice: SchemeChoice)] = []
    for tensor in tensors {
      guard let module = LinearWeights.module(of: tensor.name) ?? factorModule(tensor.name),
        choice(ofModule: module).scheme != nil, seen.insert(module).inserted
      else { continue }
      written.append((module, choice(ofModule: module)))
    }
    pass.written = written
    pass.writtenFloat32 = tensors.contains { $0.dtype == .f32 }
    return pass
  }

  /// Puts `written` in the order its modules' weights have in `names` (a recipe stage's
  /// merged variants list each variant's modules in turn).
  mutating func orderWritten(by names: [String]) {
    guard let list = written else { return }
    var rank: [String: Int] = [:]
    for (i, name) in names.enumerated() {
      if let module = LinearWeights.module(of: name) ?? factorModule(name), rank[module] == nil { rank[module] = i }
    }
    written = list.enumerated().sorted {
      (rank[$0.element.module] ?? Int.max, $0.offset) < (rank[$1.element.module] ?? Int.max, $1.offset)
    }.map(\.element)
  }

  /// A recipe stage's variants (overrides that change the scheme) write one
  /// quantization_config: their modules' schemes together.
  public func merged(with variant: QuantizePass) -> QuantizePass {
    guard let other = variant.written else { return self }
    var pass = self
    var written = self.written ?? []
    let seen = Set(written.map(\.module))
    written += other.filter { !seen.contains($0.module) }
    pass.written = written
    pass.writtenFloat32 = writtenFloat32 || variant.writtenFloat32
    return pass
  }

  /// The `quantization_config` block compressed-tensors 0.20 writes for this scheme, or for
  /// several schemes one config group per scheme, each targeting its modules by name.
  public var quantizationConfig: JSONValue {
    var choices: [SchemeChoice] = []
    for entry in written ?? [] where !choices.contains(entry.choice) { choices.append(entry.choice) }
    let block: JSONValue
    if choices.count > 1, let written {
      block = QuantizationConfig.block(
        groups: choices.map { choice in (choice, written.filter { $0.choice == choice }.map(\.module)) },
        ignore: configuration.ignore)
    } else {
      let only = choices.first ?? configuration.defaultChoice
      block = QuantizationConfig.block(
        scheme: only.scheme ?? configuration.scheme, groupSize: only.groupSize, ignore: configuration.ignore)
    }
    guard let rotation else { return block }
    return block.setting("transform_config", to: rotation.transformConfig(ignore: configuration.ignore)) ?? block
  }
}

/// An FP8 (`float-quantized`) weight of the input, which `quantize` dequantizes first.
struct Float8Input: Sendable {
  /// The scale's dtype: the dense weight's.
  var dtype: DType
  /// The input's FP8 codec (its scale blocks).
  var codec: Float8Codec

  /// The dense values of the FP8 weight `input` (its scale read as a companion).
  func dense(_ input: TensorInput) throws(SwiftCompressError) -> [Float] {
    try codec.decode(
      input, as: DenseWeight(name: input.descriptor.name, shape: input.descriptor.shape, dtype: dtype, note: ""))
  }

  /// A checkpoint that is already compressed is refused (quantizing it again would
  /// quantize the codes), except FP8 (`float-quantized`) checkpoints, whose weights are
  /// dequantized first: their modules are returned.
  static func sources(_ checkpoint: Checkpoint) throws(SwiftCompressError) -> [String: Float8Input] {
    let quantization = LoaderContract.config(of: checkpoint)?["quantization_config"]
    let codec = quantization.flatMap(QuantizationConfig.codec(of:)) as? Float8Codec
    if quantization != nil && codec == nil {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason: "is already quantized (its config.json has a quantization_config); run 'swiftcompress decompress' first"
      )
    }
    if let packed = checkpoint.tensors.first(where: { $0.name.hasSuffix(".weight_packed") }) {
      throw .invalidTensor(
        name: packed.name,
        reason: "the checkpoint already holds quantized weights; run 'swiftcompress decompress' first")
    }
    var sources: [String: Float8Input] = [:]
    for tensor in checkpoint.tensors where tensor.info.dtype == .f8E4M3 {
      guard let module = LinearWeights.module(of: tensor.name),
        let scale = checkpoint.tensor(named: module + ".weight_scale"), let codec
      else {
        throw .invalidTensor(
          name: tensor.name,
          reason:
            "an FP8 weight without a compressed-tensors weight_scale and quantization_config cannot be dequantized")
      }
      sources[module] = Float8Input(dtype: scale.info.dtype, codec: codec)
    }
    return sources
  }
}
