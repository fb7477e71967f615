import CheckpointIO
import Foundation
import LinearAlgebra

/// How much each linear module loses under each candidate scheme: what `analyze` prints and
/// what the mixed-precision allocator (`quantize --target-bpw`) minimises.
///
/// For every selected weight W and candidate, the weight is encoded exactly as `quantize`
/// would write it (the same codec, scale search and NVFP4 global scale shared over the
/// modules that read one input), decoded, and compared with W:
/// - data-free: the relative Frobenius error ||W - Q||/||W||, the SQNR, and the squared
///   error ||W - Q||²;
/// - with calibration statistics: the output error proxy tr((W - Q) H (W - Q)ᵀ) = Σ over the
///   calibration tokens of ||x (W - Q)ᵀ||², the second-order term of HAWQ and GPTQ, with
///   H = XᵀX when the file holds it (`calibrate --hessians`), else its diagonal, each input
///   channel's sum of squares s_j (Σ_ij (W - Q)_ij² s_j, llama.cpp's importance matrix).
///
/// Each weight is read once for all candidates.
public struct Sensitivity: Sendable, Codable {
  /// One module (or factor) under one candidate.
  public struct Cell: Sendable, Codable, Equatable {
    public var choice: SchemeChoice
    /// Stored bits of the weight with its scales, zero points and shape tensors.
    public var bits: Double
    public var bitsPerWeight: Double
    /// ||W - Q||_F / ||W||_F.
    public var relativeError: Double
    /// 10 log10(||W||² / ||W - Q||²); nil when exact.
    public var sqnr: Double?
    /// ||W - Q||_F².
    public var squaredError: Double
    /// tr((W - Q) H (W - Q)ᵀ) with the calibration statistics; nil without them.
    public var outputError: Double?
    /// The model's measured loss on data with only this weight stored this way (mean KL
    /// divergence for decoders, 1 - mean embedding cosine for encoders); nil when not measured.
    public var measuredLoss: Double?

    /// What the allocator minimises: the measured loss when there is one, else the output
    /// error proxy when there are statistics, else the squared weight error.
    public var loss: Double { measuredLoss ?? outputError ?? squaredError }
  }

  /// One selected weight.
  public struct Row: Sendable, Codable, Equatable {
    public var tensor: String
    public var module: String
    /// The modules that must share a scheme with this one (vLLM's fused q/k/v, gate/up).
    public var set: String
    public var shape: [Int]
    public var dtype: DType
    /// ||W||_F².
    public var squaredNorm: Double
    /// One per candidate that can store it, in candidate order.
    public var cells: [Cell]
    /// Candidates that cannot store it, with why.
    public var unavailable: [String: String]

    public var elementCount: Int { shape.reduce(1, *) }
  }

  public var candidates: [SchemeChoice]
  public var rows: [Row]
  /// Whether `outputError` was measured (calibration statistics given).
  public var weighted: Bool
  /// Whether it used the full XᵀX (else its diagonal).
  public var fullHessian = false
  /// What `measuredLoss` is ("mean KL divergence"), nil when not measured.
  public var measuredMetric: String?

  /// The model's loss with one weight replaced by the values given (what `measure` calls for
  /// every weight and candidate when the model's own loss is measured).
  public struct ModelLoss {
    /// What it measures ("mean KL divergence").
    public var metric: String
    public var measure: (_ tensor: String, _ values: [Float]) throws -> Double

    public init(metric: String, measure: @escaping (_ tensor: String, _ values: [Float]) throws -> Double) {
      self.metric = metric
      self.measure = measure
    }

    /// Evaluates `candidate` (the same model, one weight overridden at a time) against
    /// `reference` on `samples`: mean KL divergence (decoders) or 1 - mean embedding cosine
    /// (encoders).
    public static func evaluating(
      reference: any ForwardModel, candidate: any LayerByLayerModel, path: String, samples: EvaluationSamples,
      batchTokens: Int
    ) -> ModelLoss {
      let decoder = reference.kind == .decoder
      return ModelLoss(metric: decoder ? "mean KL divergence" : "1 - mean embedding cosine") { tensor, values in
        candidate.weights.override(tensor, with: values)
        defer { candidate.weights.clearOverrides() }
        let report = try Evaluator.evaluate(
          reference: reference, candidate: candidate, paths: (path, path), samples: samples, batchTokens: batchTokens)
        if decoder { return report.decoder?.kld.mean ?? .nan }
        return 1 - (report.encoder?.cosineMean ?? .nan)
      }
    }
  }

  /// Calibration statistics for the output error proxy, by module.
  public enum Statistics: Sendable {
    /// Each input channel's norm ||X_j|| (H's diagonal is its square).
    case diagonal([String: [Float]])
    /// XᵀX, row-major [C, C].
    case full([String: [Float]])

    /// `calibrate`'s file: XᵀX when it holds it for every module (`--hessians`), else the
    /// sums of squares.
    public static func load(_ path: String, modules: [(String, Int)]) throws(SwiftCompressError) -> Statistics {
      if let file = try? Checkpoint.open(path) {
        var grams: [String: [Float]] = [:]
        for (module, channels) in modules {
          guard let tensor = file.tensor(named: ActivationStatistics.TensorName.gram(module)),
            tensor.info.shape == [channels, channels], [.f32, .f64, .bf16, .f16].contains(tensor.info.dtype)
          else { break }
          grams[module] = Float32Conversion.floats(
            file.bytes(of: tensor), dtype: tensor.info.dtype, count: channels * channels)
        }
        if grams.count == modules.count, !modules.isEmpty { return .full(grams) }
      }
      return .diagonal(try CalibrationStatistics.load(path, modules: modules))
    }
  }

  /// The rows grouped into the allocator's items: modules of one set share one choice, and
  /// only choices every module of the set can take are offered.
  public var items: [Allocator.Item] {
    var order: [String] = []
    var bySet: [String: [Row]] = [:]
    for row in rows {
      if bySet[row.set] == nil { order.append(row.set) }
      bySet[row.set, default: []].append(row)
    }
    return order.map { set in
      let members = bySet[set] ?? []
      let options: [Allocator.Option] = candidates.compactMap { choice in
        let cells = members.compactMap { row in row.cells.first { $0.choice == choice } }
        guard cells.count == members.count else { return nil }
        return Allocator.Option(
          choice: choice, bits: cells.reduce(0) { $0 + $1.bits }, loss: cells.reduce(0) { $0 + $1.loss })
      }
      return Allocator.Item(name: set, modules: members.map(\.module), options: options)
    }
  }

  /// Measures every weight `pass` would quantize (its selection and ignore list; its
  /// scale search) under every candidate. `norms`: calibration norms ||X_j|| by module.
  public static func measure(
    _ checkpoint: Checkpoint, pass: QuantizePass, candidates: [SchemeChoice], statistics: Statistics?,
    modelLoss: ModelLoss? = nil, progress: ((Int, Int) -> Void)? = nil
  ) throws(SwiftCompressError) -> Sensitivity {
    let model = ModelAdapters.adapter(for: checkpoint)
    if !(try Float8Input.sources(checkpoint)).isEmpty {
      throw .invalidCheckpoint(
        path: checkpoint.path,
        reason: "holds FP8 weights: measure the dense model (run 'swiftcompress decompress' first)")
    }
    // The selected weights, and for NVFP4 each set's largest magnitude.
    let selected = try selection(checkpoint, pass: pass)
    var amax: [String: Float] = [:]
    if candidates.contains(where: { $0.codec?.sharesGlobalScale == true }) {
      for (tensor, module) in selected {
        let set = model.scaleSharingGroup(ofModule: module)
        amax[set] = max(amax[set] ?? 0, RowLoops.absMax(input(checkpoint, tensor)))
        checkpoint.release(tensor)
      }
    }
    var rows: [Row] = []
    for (index, (tensor, module)) in selected.enumerated() {
      let descriptor = TensorDescriptor(tensor.info)
      var weightNorms: [Float]?
      var gram: [Float]?
      switch statistics {
      case .diagonal(let norms): weightNorms = norms[module]
      case .full(let grams):
        gram = grams[module]
        weightNorms = gram.map { g in (0..<descriptor.shape[1]).map { g[$0 * descriptor.shape[1] + $0].squareRoot() } }
      case nil: break
      }
      if statistics != nil, weightNorms == nil {
        throw .invalidModule(name: module, reason: "the calibration statistics have no entry for it")
      }
      if let weightNorms, weightNorms.count != descriptor.shape[1] {
        throw .invalidModule(
          name: module,
          reason:
            "its calibration statistics have \(weightNorms.count) input channels; the weight has \(descriptor.shape[1])"
        )
      }
      let set = model.scaleSharingGroup(ofModule: module)
      let data = input(checkpoint, tensor)
      // The dense values, only when a cell needs them (the codecs measure the plain errors).
      var dense: [Float]?
      func reference() -> [Float] {
        if dense == nil { dense = data.floats() }
        return dense!
      }
      let count = descriptor.elementCount ?? 0
      var squaredNorm: Double?
      var cells: [Cell] = []
      var unavailable: [String: String] = [:]
      for choice in candidates {
        guard let codec = choice.codec else {
          let bitsPerElement = Double(tensor.info.dtype.bitsPerElement)
          cells.append(
            Cell(
              choice: choice, bits: Double(count) * bitsPerElement, bitsPerWeight: bitsPerElement,
              relativeError: 0, sqnr: nil, squaredError: 0, outputError: weightNorms == nil ? nil : 0,
              measuredLoss: modelLoss == nil ? nil : 0))
          continue
        }
        let planned: [PlannedTensor]
        do {
          planned = try codec.layout(of: descriptor, module: module).outputs
        } catch {
          unavailable[choice.description] = error.errorDescription ?? "\(error)"
          continue
        }
        let context = QuantizationContext(
          scaleSearch: pass.configuration.scaleSearch,
          globalScale: codec.sharesGlobalScale
            ? NVFP4Codec.globalScale(amax: amax[set] ?? 0, dtype: tensor.info.dtype) : nil)
        let result = try codec.encode(data, context: context)
        var bytes: [[UInt8]] = []
        for output in result.outputs {
          switch output {
          case .owned(let b): bytes.append(b)
          case .borrowed(let b): bytes.append(Array(b))
          case .input: bytes.append(Array(data.bytes))
          }
        }
        let bits = Double(bytes.reduce(0) { $0 + $1.count } * 8)
        if weightNorms == nil, modelLoss == nil, case .measured(let error) = result.reconstruction {
          // Data-free: the codec measured the error while encoding, as quantize reports it.
          cells.append(cell(choice, bits: bits, count: count, error: error))
          squaredNorm = error.referenceSquares
          continue
        }
        let decoded = try codec.decode(outputs: planned, data: bytes, shape: descriptor.shape)
        var measured = cell(choice, bits: bits, reference: reference(), decoded: decoded, norms: weightNorms)
        if let gram {
          measured.outputError = try Self.quadraticForm(reference(), decoded, gram: gram, columns: descriptor.shape[1])
        }
        if let modelLoss {
          do {
            measured.measuredLoss = try modelLoss.measure(tensor.name, decoded)
          } catch let error as SwiftCompressError {
            throw error
          } catch {
            throw .invalidTensor(name: tensor.name, reason: "measuring the model's loss failed: \(error)")
          }
        }
        cells.append(measured)
      }
      checkpoint.release(tensor)
      rows.append(
        Row(
          tensor: tensor.name, module: module, set: set, shape: descriptor.shape, dtype: tensor.info.dtype,
          squaredNorm: squaredNorm ?? reference().reduce(0) { $0 + Double($1) * Double($1) }, cells: cells,
          unavailable: unavailable))
      progress?(index + 1, selected.count)
    }
    var result = Sensitivity(candidates: candidates, rows: rows, weighted: statistics != nil)
    if case .full = statistics { result.fullHessian = true }
    result.measuredMetric = modelLoss?.metric
    return result
  }

  /// The weights `pass` selects (linear, not ignored, not embeddings), with their modules.
  public static func selection(_ checkpoint: Checkpoint, pass: QuantizePass) throws(SwiftCompressError) -> [(
    CheckpointTensor, String
  )] {
    let model = ModelAdapters.adapter(for: checkpoint)
    var selected: [(CheckpointTensor, String)] = []
    for tensor in checkpoint.tensors {
      guard
        case .module(let module) = try LinearWeights.select(
          TensorDescriptor(tensor.info), ignoring: pass.ignoreRules, verb: "quantized", factors: true, model: model)
      else { continue }
      selected.append((tensor, module))
    }
    return selected
  }

  private static func input(_ checkpoint: Checkpoint, _ tensor: CheckpointTensor) -> TensorInput {
    TensorInput(descriptor: TensorDescriptor(tensor.info), bytes: checkpoint.bytes(of: tensor))
  }

  /// tr(E H Eᵀ) for E = reference - decoded ([rows, columns]) and H [columns, columns].
  static func quadraticForm(_ reference: [Float], _ decoded: [Float], gram: [Float], columns: Int)
    throws(SwiftCompressError) -> Double
  {
    let rows = reference.count / max(1, columns)
    var error = [Float](repeating: 0, count: reference.count)
    for i in error.indices { error[i] = reference[i] - decoded[i] }
    var product = [Float](repeating: 0, count: reference.count)
    do {
      try error.withUnsafeBufferPointer { e in
        try gram.withUnsafeBufferPointer { h in
          try product.withUnsafeMutableBufferPointer { p in
            try gemmRowMajor(
              m: rows, n: columns, k: columns, a: e.baseAddress!, lda: columns, b: h.baseAddress!, ldb: columns,
              transposeB: false, c: p.baseAddress!, ldc: columns)
          }
        }
      }
    } catch {
      throw .invalidTensor(name: "H", reason: "\(error)")
    }
    var sum = 0.0
    for i in error.indices { sum += Double(error[i]) * Double(product[i]) }
    return sum
  }

  /// The errors a codec measured while encoding.
  static func cell(_ choice: SchemeChoice, bits: Double, count: Int, error: ErrorAccumulator) -> Cell {
    let (errorSquares, referenceSquares) = (error.errorSquares, error.referenceSquares)
    return Cell(
      choice: choice, bits: bits, bitsPerWeight: bits / Double(max(1, count)),
      relativeError: referenceSquares > 0 ? (errorSquares / referenceSquares).squareRoot() : 0,
      sqnr: errorSquares > 0 && referenceSquares > 0 ? 10 * log10(referenceSquares / errorSquares) : nil,
      squaredError: errorSquares, outputError: nil)
  }

  /// The errors of `decoded` against `reference` ([rows, columns] row-major).
  static func cell(
    _ choice: SchemeChoice, bits: Double, reference: [Float], decoded: [Float], norms: [Float]?
  ) -> Cell {
    var errorSquares = 0.0
    var referenceSquares = 0.0
    var weighted = 0.0
    let columns = norms?.count ?? max(1, reference.count)
    var columnSquares = [Double](repeating: 0, count: columns)
    reference.withUnsafeBufferPointer { r in
      decoded.withUnsafeBufferPointer { q in
        for start in stride(from: 0, to: r.count, by: columns) {
          for j in 0..<min(columns, r.count - start) {
            let d = Double(r[start + j]) - Double(q[start + j])
            columnSquares[j] += d * d
            referenceSquares += Double(r[start + j]) * Double(r[start + j])
          }
        }
      }
    }
    errorSquares = columnSquares.reduce(0, +)
    if let norms {
      for j in 0..<columns { weighted += columnSquares[j] * Double(norms[j]) * Double(norms[j]) }
    }
    return Cell(
      choice: choice, bits: bits, bitsPerWeight: bits / Double(max(1, reference.count)),
      relativeError: referenceSquares > 0 ? (errorSquares / referenceSquares).squareRoot() : 0,
      sqnr: errorSquares > 0 && referenceSquares > 0 ? 10 * log10(referenceSquares / errorSquares) : nil,
      squaredError: errorSquares, outputError: norms == nil ? nil : weighted)
  }
}
