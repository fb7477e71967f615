#ifndef SWIFTCOMPRESS_CKERNELS_H
#define SWIFTCOMPRESS_CKERNELS_H
// The hot loops of swiftcompress. Each function has a portable C path and, where
// the CPU supports it, an AVX2/FMA/F16C path chosen once at run time
// (__builtin_cpu_supports). Results are bit-identical between the two paths.
// This module has no stable API: it is used only by swiftcompress's own libraries.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the AVX2+FMA+F16C paths are in use, 0 for the portable paths.
/// Setting the environment variable SWIFTCOMPRESS_KERNELS=portable forces 0.
int sck_simd_level(void);

// ---- dtype conversion (little-endian raw storage) ----
/// IEEE binary16 -> binary32, exact (subnormals, infinities; NaN payloads kept, quiet bit set).
void sck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// bfloat16 -> binary32, exact (a 16-bit shift).
void sck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// binary32 -> binary16, round to nearest even; overflow -> +-inf; NaN -> quiet NaN (sign kept).
void sck_f32_to_f16(const float *src, uint16_t *dst, size_t n);
/// binary32 -> bfloat16, round to nearest even; NaN -> quiet NaN (sign kept).
void sck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
/// Byte codes -> binary32 through a 256-entry table (FP8 E4M3/E5M2/E8M0).
void sck_lut8_to_f32(const uint8_t *src, const float *table256, float *dst, size_t n);

// ---- reductions over binary32 ----
typedef struct {
  double sum;        // over finite values
  double sum_sq;     // over finite values
  float min;         // over finite values (+inf when none)
  float max;         // over finite values (-inf when none)
  float absmax;      // over finite values (0 when none)
  uint64_t zeros;    // exact zeros (+0 and -0)
  uint64_t nans;
  uint64_t infs;
} sck_stats;

/// Summary statistics of x[0..n), accumulated in double. Deterministic for a given n.
void sck_stats_f32(const float *x, size_t n, sck_stats *out);

typedef struct {
  double ref_sq;        // sum ref^2
  double out_sq;        // sum out^2
  double err_sq;        // sum (ref - out)^2
  double dot;           // sum ref * out
  float max_abs_err;    // max |ref - out| (the difference taken in double, then rounded)
  uint64_t nonfinite;   // positions where ref or out is NaN or +-inf (excluded from the sums)
} sck_error_stats;

/// Error statistics between a reference and a reconstruction, both of length n.
/// Accumulated in double (products of floats are exact). Deterministic for a given n.
void sck_error_stats_f32(const float *ref, const float *out, size_t n, sck_error_stats *result);

// ---- quantization ----
/// Integer group quantization of one row of `groups * group` values (Float32 values that
/// are representable in the weight's dtype), exactly as compressed-tensors computes it.
/// `dtype`: 0 Float32, 1 BFloat16, 2 Float16 (each operation rounded to it). `epsilon`
/// replaces a zero scale. Writes per element the code q + 2^(bits-1) into `codes` (a
/// scratch row) and the reconstruction (q - zp) * s, per group the scale and (asymmetric)
/// the zero point, and finally the codes packed into little-endian 32-bit `words` filled
/// from the least significant bit, as one bit stream per row (a 3-, 5- or 6-bit code may
/// straddle two words; for 8 bits `codes` may be `words` itself).
void sck_quantize_int_groups(const float *x, size_t groups, size_t group, int bits, int symmetric, int dtype,
                             float epsilon, uint8_t *codes, uint32_t *words, float *scales, float *zero_points,
                             float *recon);

/// Symmetric integer quantization of `rows` consecutive rows of `columns` weights stored
/// as `dtype` (0 Float32, 1 BFloat16, little-endian), in one pass: `bits` 4 or 8, groups of
/// `group` values (dividing `columns`). Writes each row's packed codes (columns * bits / 8
/// bytes, rows one after the other), the Float32 scales (rows x groups) and each row's
/// error statistics against its weights: exactly what widening the row,
/// sck_quantize_int_groups (symmetric) and sck_error_stats_f32 over the row give.
/// Returns -1 (nothing written) for other bit widths or dtypes, else 0.
int sck_quantize_int_rows(const void *x, size_t rows, size_t columns, size_t group, int bits, int dtype,
                          float epsilon, uint8_t *packed, float *scales, sck_error_stats *stats);

/// The MSE clipping search of integer group quantization over one row of `groups * group`
/// finite values, widened to Float32 from `dtype` (0 Float32, 1 BFloat16), every operation
/// rounded to it as IntegerPackCodec's search rounds: for each group, the first of the
/// `count` clipping factors `alphas` (alphas[0] = 1, the reference's scale) whose
/// reconstruction has the least squared error (summed in double in element order), its
/// scale (and zero point when not `symmetric`), the codes q + 2^(bits - 1), the
/// reconstruction, and in `alternative` the reconstruction at alphas[0]. Returns 0, or
/// -1 with nothing written (no AVX2, another dtype, more than 64 factors): the caller's
/// own loop then runs.
int sck_int_mse_row(const float *values, size_t groups, size_t group, int bits, int symmetric, int dtype,
                    float epsilon, const float *alphas, size_t count, float *scales, float *zero_points,
                    uint8_t *codes, float *recon, float *alternative);

/// FP8 E4M3 of `n` values, value i scaled by scales[i / segment]: codes e4m3(clamp(x/s,
/// +-448)) and reconstructions e4m3 x s, each operation rounded to `dtype`.
void sck_quantize_fp8(const float *x, size_t n, const float *scales, size_t segment, int dtype, uint8_t *codes,
                      float *recon);

/// MXFP4 of `groups` groups of 32 values: per group the E8M0 exponent e of the OCP rule
/// as the reference computes it, packed E2M1 codes (even element in the low nibble) of
/// clamp(x / 2^(e-127), +-6), and reconstructions.
void sck_quantize_mxfp4(const float *x, size_t groups, int dtype, uint8_t *exponents, uint8_t *packed,
                        float *recon);

/// MXFP4 of `rows` consecutive rows of `columns` weights (a multiple of 32) stored as
/// `dtype` (0 Float32, 1 BFloat16), in one pass: each row's exponents (columns / 32) and
/// packed codes (columns / 2 bytes), and its error statistics against its weights: exactly
/// what widening the row, sck_quantize_mxfp4 and sck_error_stats_f32 over the row give.
/// Returns -1 (nothing written) for other dtypes or widths, else 0.
int sck_quantize_mxfp4_rows(const void *x, size_t rows, size_t columns, int dtype, uint8_t *exponents,
                            uint8_t *packed, sck_error_stats *stats);

/// The E8M0 exponent of an MXFP4 group whose absolute maximum is `amax` (0 for zero or
/// non-finite amax): 127 + floor(log2(amax)) - 2 with amax's mantissa first rounded to a
/// power of two, up from 1.75, as compressed-tensors' round_to_power_2 does in any dtype.
uint8_t sck_mx_exponent(float amax);

/// max |x[i]| over the finite values of `x`; the number of NaN and infinite values is
/// added to *nonfinite.
float sck_absmax_f32(const float *x, size_t n, uint64_t *nonfinite);

/// NVFP4 of `groups` groups of 16 values with global scale `global`: E4M3 scale codes
/// e4m3(global x r(amax / 6)) (0 -> 0.125), packed E2M1 codes of x / (scale / global), and
/// reconstructions, as compressed-tensors computes them.
void sck_quantize_nvfp4(const float *x, size_t groups, float global, int dtype, uint8_t *scale_codes,
                        uint8_t *packed, float *recon);

// ---- pruning ----
// Scores are non-negative finite floats; among equal scores the lower index is pruned first.

/// Adds to `bins` (65536 counters) the top 16 bits of each score's bit pattern, or, when
/// `prefix` >= 0, the low 16 bits of the scores whose top 16 bits equal `prefix`.
void sck_score_histogram(const float *scores, size_t n, int32_t prefix, uint64_t *bins);

/// keep[i] = 1 when scores[i] > threshold, or == threshold once *ties_to_prune has been
/// used up (each tie pruned decrements it). Returns the number kept.
size_t sck_threshold_mask(const float *scores, size_t n, float threshold, uint64_t *ties_to_prune, uint8_t *keep);

/// For each group of `m` consecutive scores, keep[i] = 1 for the `keep_n` largest (ties
/// keep the later element). `count` is a multiple of `m`.
void sck_nm_mask(const float *scores, size_t count, int keep_n, int m, uint8_t *keep);

/// The k-th smallest (0-based, k < n) of `n` scores; `work` (n floats) is overwritten.
float sck_select_kth(const float *scores, size_t n, size_t k, float *work);

/// Adds to *below and *equal the number of scores below and equal to `threshold`.
void sck_count_below_equal(const float *scores, size_t n, float threshold, uint64_t *below, uint64_t *equal);

/// dst[i] = keep[i] ? src[i] : 0 for `n` elements of `element_size` bytes.
void sck_apply_mask(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst);

/// recon[i] = keep[i] ? values[i] : 0; returns the number kept and sets *zeros to the
/// number of zeros in recon (pruned, or kept but zero already).
size_t sck_mask_row(const float *values, const uint8_t *keep, size_t n, float *recon, size_t *zeros);

/// The number of groups of `m` consecutive values holding more than `keep_n` non-zeros.
size_t sck_groups_over(const float *values, size_t n, int keep_n, int m);

/// Copies the kept elements to `dst` in order and writes the packed bitmask (bit i % 8
/// of byte i / 8, (n + 7) / 8 bytes, as numpy.packbits(bitorder="little")). Returns the
/// number kept.
size_t sck_gather_kept(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst,
                       uint8_t *bitmask);

/// The inverse of sck_gather_kept: writes `n` dense elements, zeros where the bit is
/// clear. Returns the number of values consumed.
size_t sck_scatter_kept(const void *src, size_t n, size_t element_size, const uint8_t *bitmask, void *dst);

// ---- calibrated error feedback ----
/// GPTQ/SparseGPT's in-block update after one column: for k < count with factors[k] != 0,
/// columns[k * stride + r] -= err[r] * factors[k] for r < rows, the product rounded before the
/// subtraction (no fused multiply-add) on both paths.
void sck_feedback_rank1(float *columns, size_t stride, size_t count, const float *err, const float *factors,
                        size_t rows);

// ---- forward-pass activations ----
// exp as activations.c computes it: within 2 ulp of expf, 0 below -104, inf above 88.8,
// NaN for NaN; the same bits on both paths.

/// y[i] = exp(x[i]) (`y` may be `x`).
void sck_exp_f32(const float *x, float *y, size_t n);

/// Softmax of x[0..n) in place: exp(x - max) / sum, the sum over 8 lanes (element i in lane
/// i % 8) added in lane order. A row of -inf only gives NaN, as torch does.
void sck_softmax_f32(float *x, size_t n);

/// SiLU in place, g[i] = g[i] / (1 + exp(-g[i])), times u[i] when `u` is not NULL (a gated MLP).
void sck_silu_f32(float *g, const float *u, size_t n);

// ---- file copy ----
/// copy_file_range(2) of `length` bytes from `fd_in` at `offset_in` to `fd_out` at its
/// current offset. Returns the bytes copied (possibly fewer than asked), or -errno
/// (-ENOSYS where the call does not exist; -EXDEV across file systems on old kernels).
long long sck_copy_file_range(int fd_in, long long offset_in, int fd_out, size_t length);

/// Tunes the C allocator to keep tensor-sized buffers mapped between uses (glibc; a no-op
/// elsewhere). Called once by the command-line tool before a pipeline runs.
void sck_keep_large_allocations(void);

// ---- testing only ----
/// Forces the portable paths (1) or restores the dispatch (0), so tests can compare
/// both paths in one process.
void sck_force_portable_for_testing(int on);

/// zlib's CRC-32 of `length` bytes, continuing from `crc` (0 to start): carry-less
/// multiplication (PCLMULQDQ) when the CPU has it, zlib's own code otherwise.
uint32_t sck_crc32(uint32_t crc, const void *data, size_t length);
/// zlib's own CRC-32 code alone (what the tests compare `sck_crc32` with).
uint32_t sck_crc32_zlib(uint32_t crc, const void *data, size_t length);
/// The CRC-32 of two concatenated blocks from theirs (zlib's crc32_combine).
uint32_t sck_crc32_combine(uint32_t first, uint32_t second, uint64_t second_length);

#ifdef __cplusplus
}
#endif
#endif
