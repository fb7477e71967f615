import CKernels
import CheckpointIO
import Foundation

/// compressed-tensors' `nvfp4-pack-quantized` layout (NVFP4A16): for a weight W [out, in],
/// `<weight>_packed` U8 [out, in / 2], `<weight>_scale` F8_E4M3 [out, in / 16] and
/// `<weight>_global_scale` F32 [1].
///
/// NVFP4: per 16 values an E4M3 scale e4m3(g x r(amax / 6)) (0 becomes 0.125, the
/// E4M3 epsilon, as in the reference), and E2M1 codes of clamp(W / (scale / g), +-6),
/// the division in Float32; g is stored as F32 [1]. The MSE search also tries the
/// three smaller E4M3 scales and the next larger one.
///
/// The global scale g = 2688 / amax is shared by the modules that read one input (q/k/v,
/// gate/up), as vLLM requires: the quantize pass chooses it over them and passes it in
/// the context. Decoding, as the reference's NVFP4 decompressor: code x (scale / g) in
/// Float32, rounded to BF16 (its working dtype), whatever dtype is written.
public struct NVFP4Codec: QuantizationCodec {
  public init() {}

  public var format: String { "nvfp4-pack-quantized" }
  public var bits: Int { 4 }
  public var sharesGlobalScale: Bool { true }

  public static let readableFormat = "nvfp4-pack-quantized"

  public static func described(format: String, weights: JSONValue?) -> NVFP4Codec? {
    format == "nvfp4-pack-quantized" ? NVFP4Codec() : nil
  }

  public func layout(of weight: TensorDescriptor, module: String) throws(SwiftCompressError) -> (
    outputs: [PlannedTensor], note: String
  ) {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    try FP4Layout.check(weight, module: module, group: 16)
    return (
      [
        PlannedTensor(name: weight.name + "_packed", dtype: .u8, shape: [rows, columns / 2]),
        PlannedTensor(name: weight.name + "_scale", dtype: .f8E4M3, shape: [rows, columns / 16]),
        PlannedTensor(name: weight.name + "_global_scale", dtype: .f32, shape: [1]),
      ], "E4M3 scale per 16 and a global scale"
    )
  }

  public var weightArguments: [JSONMember] {
    FP4Layout.arguments(group: 16, strategy: "tensor_group") + [
      JSONMember("scale_dtype", .string("torch.float8_e4m3fn"))
    ]
  }

  public func encode(_ input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> TransformResult
  {
    let (rows, columns) = (input.descriptor.shape[0], input.descriptor.shape[1])
    // A weight with no shared scale (a factor of factorize) gets its own.
    let globalScale =
      context.globalScale ?? Self.globalScale(amax: RowLoops.absMax(input), dtype: input.descriptor.dtype)
    let round = DTypeRounding(input.descriptor.dtype)
    let groups = columns / 16
    let searching = context.scaleSearch == .mse
    var scales: [UInt8] = RowLoops.uninitialized(rows * groups)  // every element written below
    // The search ORs nibbles in; the kernel writes whole bytes.
    var packed =
      searching ? [UInt8](repeating: 0, count: rows * columns / 2) : RowLoops.uninitialized(rows * columns / 2)
    let table = Float32Conversion.e4m3Table
    func code(_ value: Float, _ effective: Float) -> UInt8 { Self.code(value, effective: effective) }
    func decode(_ value: Float, _ effective: Float) -> Float {
      Float32Conversion.e2m1Table[Int(code(value, effective))] * effective
    }
    if !searching {
      let dtypeCode = RowLoops.kernelDType(input.descriptor.dtype)
      let error = packed.withUnsafeMutableBufferPointer { packedOut in
        scales.withUnsafeMutableBufferPointer { scaleOut in
          nonisolated(unsafe) let (packedOut, scaleOut) = (packedOut, scaleOut)
          return RowLoops.parallelRows(input, rows: rows, columns: columns) { row, values, reconstruction in
            sck_quantize_nvfp4(
              values.baseAddress, groups, globalScale, dtypeCode, scaleOut.baseAddress! + row * groups,
              packedOut.baseAddress! + row * columns / 2, reconstruction.baseAddress)
          }
        }
      }
      try RowLoops.rejectNonFinite(error, input, rows: rows, columns: columns)
      let global = [globalScale].withUnsafeBytes { Array($0) }
      return TransformResult(
        outputs: [.owned(packed), .owned(scales), .owned(global)], reconstruction: .measured(error))
    }
    // The search, rows in parallel: each row writes only its own scales and bytes.
    let (error, baseline) = try scales.withUnsafeMutableBufferPointer { (scalesOut) throws(SwiftCompressError) in
      try packed.withUnsafeMutableBufferPointer { (packedOut) throws(SwiftCompressError) in
        nonisolated(unsafe) let (scalesOut, packedOut) = (scalesOut, packedOut)
        return try RowLoops.forEachRowInParallel(input, rows: rows, columns: columns, baseline: searching) {
          row, values, reconstruction, alternative in
          for g in 0..<groups {
            let range = (g * 16)..<(g * 16 + 16)
            var amax: Float = 0
            for i in range { amax = max(amax, abs(values[i])) }
            var scaleCode = Float32Conversion.e4m3Code(min(max(globalScale * round(amax / 6), -448), 448))
            if table[Int(scaleCode)] == 0 { scaleCode = Float32Conversion.e4m3Code(0.125) }
            if searching {
              let reference = Int(scaleCode)
              let effective = table[reference] / globalScale
              for i in range { alternative[i] = decode(values[i], effective) }
              var best = RowLoops.squaredError(values, range) { alternative[$0] }
              // Positive E4M3 codes 1...0x7E are ordered by value.
              for candidate in [reference - 1, reference - 2, reference - 3, reference + 1]
              where (1...0x7E).contains(candidate) {
                let e = table[candidate] / globalScale
                let error = RowLoops.squaredError(values, range) { decode(values[$0], e) }
                if error < best { (best, scaleCode) = (error, UInt8(candidate)) }
              }
            }
            scalesOut[row * groups + g] = scaleCode
            let effective = table[Int(scaleCode)] / globalScale
            for i in range {
              let fp4 = code(values[i], effective)
              packedOut[(row * columns + i) / 2] |= i % 2 == 0 ? fp4 : fp4 << 4
              reconstruction[i] = Float32Conversion.e2m1Table[Int(fp4)] * effective
            }
          }
        }
      }
    }
    let global = [globalScale].withUnsafeBytes { Array($0) }
    return TransformResult(
      outputs: [.owned(packed), .owned(scales), .owned(global)], reconstruction: .measured(error), baseline: baseline)
  }

  /// NVFP4's global scale for a largest magnitude `amax`, rounded as PyTorch computes it
  /// in the weight's dtype.
  static func globalScale(amax: Float, dtype: DType) -> Float {
    let round = DTypeRounding(dtype)
    let amax = max(amax, Float.leastNormalMagnitude)  // the reference clamps to finfo.tiny
    let scale = round(round(1 / amax) * 2688)
    return scale.isFinite ? scale : 1
  }

  public func densePrimary(_ stored: TensorDescriptor) -> DenseWeight? {
    FP4Layout.densePrimary(stored)
  }

  public func isCompanion(_ stored: TensorDescriptor) -> Bool { QuantizedNames.isCompanion(stored.name) }

  public func decode(_ primary: TensorInput, as weight: DenseWeight) throws(SwiftCompressError) -> [Float] {
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let scale = try FP4Layout.scale(primary, weight)
    let global = try requiredCompanion(primary, weight.name + "_global_scale").floats().first ?? 1
    let scales = scale.floats()
    let groups = scale.descriptor.shape[1]
    let group = columns / groups
    var dense = [Float](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      for column in 0..<columns {
        let byte = primary.bytes[(row * columns + column) / 2]
        let code = column % 2 == 0 ? byte & 0xF : byte >> 4
        dense[row * columns + column] = Self.decoded(code, effective: scales[row * groups + column / group] / global)
      }
    }
    return dense
  }

  /// The E2M1 code of `value` for the effective scale (group scale / global scale):
  /// clamp(value / effective, +-6), the division in Float32, rounded to nearest even.
  @inline(__always)
  static func code(_ value: Float, effective: Float) -> UInt8 {
    MXFP4Codec.e2m1Code(min(max(value / effective, -6), 6))
  }

  /// The value code `code` decodes to, as the reference's decompressor computes it:
  /// code x effective in Float32, rounded to BF16.
  @inline(__always)
  static func decoded(_ code: UInt8, effective: Float) -> Float {
    DTypeRounding(.bf16)(Float32Conversion.e2m1Table[Int(code)] * effective)
  }
}
