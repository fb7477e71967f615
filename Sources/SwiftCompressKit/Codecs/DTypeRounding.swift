import CheckpointIO

/// Rounding of a Float32 result to the precision of a stored dtype, to reproduce
/// arithmetic done in that dtype (PyTorch computes BF16/F16 operations in Float32 and
/// rounds each result to nearest even).
struct DTypeRounding: Sendable {
  /// PyTorch's names of the float dtypes, as config.json's `torch_dtype` writes them.
  static let torchNames: [DType: String] = [.f32: "float32", .f16: "float16", .bf16: "bfloat16", .f64: "float64"]

  let dtype: DType

  init(_ dtype: DType) {
    self.dtype = dtype
  }

  func callAsFunction(_ x: Float) -> Float {
    switch dtype {
    case .bf16:
      let bits = x.bitPattern
      if x.isNaN { return x }
      return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
    case .f16: return Float(Float16(x))
    default: return x
    }
  }

  /// torch.finfo(dtype).eps.
  var epsilon: Float {
    switch dtype {
    case .bf16: 0x1p-7
    case .f16: 0x1p-10
    default: Float.ulpOfOne
    }
  }
}
