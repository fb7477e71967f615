import CheckpointIO
import Foundation

/// The grid one weight is quantized on, fixed from its dense values before anything
/// changes them, and the writer of values that already lie on it.
///
/// GPTQ and SparseGPT (Calibration/) choose the grid first, exactly as `encode(_:context:)`
/// would (the reference's rule, or the MSE search, and NVFP4's shared global scale from the
/// context), then move later columns to absorb each rounded column's error, round each
/// column to this same grid, and finally write the rounded values. llm-compressor does the
/// same: its observer fixes scales and zero points from the original weight before GPTQ
/// runs, and compressed-tensors writes GPTQ's output with them.
///
/// Contract (tested for every codec in `QuantizationGridTests`):
/// - the stored scales (and zero points, global scale) of `encode(values:)` are those of
///   `QuantizationCodec.encode(_:context:)` on the original weight, whatever `values` are;
/// - for values returned by `round(column:values:)` (or an exact zero, which every grid
///   holds), decoding `encode(values:)` gives them back bit for bit;
/// - `round` of the original weight's columns gives what round-to-nearest
///   (`encode(_:context:)`) decodes to.
public protocol QuantizationGrid: Sendable {
  /// Rows and columns of the weight.
  var rows: Int { get }
  var columns: Int { get }

  /// Rounds column `column` of the weight to the grid in place: `values` holds that
  /// column's `rows` values (one per output row); each becomes the value the codec's
  /// decoder gives for the code it is stored as.
  func round(column: Int, values: UnsafeMutableBufferPointer<Float>)

  /// The stored tensors of a weight whose values (row-major [rows, columns]) lie on the
  /// grid, in `layout(of:module:)`'s order, with the grid's scales. The result's
  /// reconstruction is left for the caller to measure against the original weight.
  func encode(values: [Float]) throws(SwiftCompressError) -> TransformResult
}

extension QuantizationCodec {
  /// The grid `encode(input, context:)` quantizes `input` on (same scales, zero points and
  /// global scale); `input` is the original dense weight (F32, BF16 or F16).
  public func grid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
  {
    guard let provider = self as? any QuantizationGridProvider else {
      throw .invalidConfiguration(
        pass: "quantize", reason: "\(layoutName) cannot be written from calibrated values (no grid)")
    }
    return try provider.makeGrid(for: input, context: context)
  }
}

/// A codec that can fix its grid before the values are final (GPTQ, SparseGPT with
/// quantization). Every codec `quantize` writes conforms.
public protocol QuantizationGridProvider: QuantizationCodec {
  func makeGrid(for input: TensorInput, context: QuantizationContext) throws(SwiftCompressError)
    -> any QuantizationGrid
}
