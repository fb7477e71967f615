// Round-to-nearest quantization of whole rows in one pass: the stored weights (Float32 or
// BFloat16, widened in registers), the group's absolute maximum, the codes, their packing
// and the error sums against the weights, without intermediate Float32 rows.
//
// The results are exactly those of the step-by-step path, which is also the portable
// path here: widen the row, sck_quantize_int_groups (or sck_quantize_mxfp4), then
// sck_error_stats_f32 over the row. The vector path performs the same IEEE operations
// element by element (division, round-half-even, the BF16 rounding on the bit pattern)
// and adds the error terms into the same eight double lanes in the same order.
#include "CKernels.h"
#include "rounding.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#pragma clang fp contract(off)

#if defined(__x86_64__) || defined(__i386__)
#define SCK_X86 1
#include <immintrin.h>
#else
#define SCK_X86 0
#endif

// ---- the step-by-step path ----

static void widen_row(const void *x, int dtype, size_t row, size_t columns, float *out) {
  if (dtype == 1) {
    sck_bf16_to_f32((const uint16_t *)x + row * columns, out, columns);
  } else {
    memcpy(out, (const float *)x + row * columns, columns * sizeof(float));
  }
}

static int int_rows_stepwise(const void *x, size_t rows, size_t columns, size_t group, int bits, int dtype,
                             float epsilon, uint8_t *packed, float *scales, sck_error_stats *stats) {
  float *values = malloc(columns * sizeof(float) * 2);
  uint8_t *codes = malloc(columns);
  if (!values || !codes) {
    free(values);
    free(codes);
    return -1;
  }
  float *recon = values + columns;
  const size_t groups = columns / group, row_bytes = columns * (size_t)bits / 8;
  for (size_t r = 0; r < rows; r++) {
    widen_row(x, dtype, r, columns, values);
    uint8_t *out = packed + r * row_bytes;
    sck_quantize_int_groups(values, groups, group, bits, 1, dtype, epsilon, bits == 8 ? out : codes,
                            (uint32_t *)out, scales + r * groups, NULL, recon);
    sck_error_stats_f32(values, recon, columns, stats + r);
  }
  free(values);
  free(codes);
  return 0;
}

static int mxfp4_rows_stepwise(const void *x, size_t rows, size_t columns, int dtype, uint8_t *exponents,
                               uint8_t *packed, sck_error_stats *stats) {
  float *values = malloc(columns * sizeof(float) * 2);
  if (!values) return -1;
  float *recon = values + columns;
  for (size_t r = 0; r < rows; r++) {
    widen_row(x, dtype, r, columns, values);
    sck_quantize_mxfp4(values, columns / 32, dtype, exponents + r * (columns / 32), packed + r * (columns / 2),
                       recon);
    sck_error_stats_f32(values, recon, columns, stats + r);
  }
  free(values);
  return 0;
}

#if SCK_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE __attribute__((always_inline)) inline

// 8 weights as Float32: loaded, or BFloat16 widened (exact: a 16-bit shift).
AVX2 static INLINE __m256 load8(const void *x, size_t i, int dtype) {
  if (dtype == 1) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)x + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps((const float *)x + i);
}

// The error sums of sck_error_stats_f32's vector path: element i in lane i % 8 (the low
// half of a vector in lanes 0-3), non-finite pairs left out and counted.
typedef struct {
  __m256d r_lo, r_hi, o_lo, o_hi, e_lo, e_hi, d_lo, d_hi, m_lo, m_hi;
  uint64_t nonfinite;
} error8;

AVX2 static INLINE void error8_init(error8 *a) {
  __m256d z = _mm256_setzero_pd();
  a->r_lo = a->r_hi = a->o_lo = a->o_hi = a->e_lo = a->e_hi = a->d_lo = a->d_hi = a->m_lo = a->m_hi = z;
  a->nonfinite = 0;
}

AVX2 static INLINE __m256 finite8(__m256 v) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7F800000);
  __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exp_mask);
  return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(e, exp_mask), _mm256_set1_epi32(-1)));
}

AVX2 static INLINE void error8_add(error8 *a, __m256 r, __m256 o) {
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
  __m256 fin = _mm256_and_ps(finite8(r), finite8(o));
  int mask = _mm256_movemask_ps(fin);
  if (mask != 0xFF) {
    r = _mm256_and_ps(r, fin);
    o = _mm256_and_ps(o, fin);
    a->nonfinite += (uint64_t)(8 - __builtin_popcount(mask));
  }
  __m256d rl = _mm256_cvtps_pd(_mm256_castps256_ps128(r)), rh = _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1));
  __m256d ol = _mm256_cvtps_pd(_mm256_castps256_ps128(o)), oh = _mm256_cvtps_pd(_mm256_extractf128_ps(o, 1));
  __m256d el = _mm256_sub_pd(rl, ol), eh = _mm256_sub_pd(rh, oh);
  a->r_lo = _mm256_fmadd_pd(rl, rl, a->r_lo);
  a->r_hi = _mm256_fmadd_pd(rh, rh, a->r_hi);
  a->o_lo = _mm256_fmadd_pd(ol, ol, a->o_lo);
  a->o_hi = _mm256_fmadd_pd(oh, oh, a->o_hi);
  a->e_lo = _mm256_add_pd(a->e_lo, _mm256_mul_pd(el, el));
  a->e_hi = _mm256_add_pd(a->e_hi, _mm256_mul_pd(eh, eh));
  a->d_lo = _mm256_fmadd_pd(rl, ol, a->d_lo);
  a->d_hi = _mm256_fmadd_pd(rh, oh, a->d_hi);
  a->m_lo = _mm256_max_pd(a->m_lo, _mm256_and_pd(el, abs_mask));
  a->m_hi = _mm256_max_pd(a->m_hi, _mm256_and_pd(eh, abs_mask));
}

static INLINE double fold8(const double *lanes) {
  double total = 0;
  for (int j = 0; j < 8; j++) total += lanes[j];
  return total;
}

AVX2 static INLINE void error8_finish(const error8 *a, sck_error_stats *out) {
  double l[8];
  _mm256_storeu_pd(l, a->r_lo);
  _mm256_storeu_pd(l + 4, a->r_hi);
  out->ref_sq = fold8(l);
  _mm256_storeu_pd(l, a->o_lo);
  _mm256_storeu_pd(l + 4, a->o_hi);
  out->out_sq = fold8(l);
  _mm256_storeu_pd(l, a->e_lo);
  _mm256_storeu_pd(l + 4, a->e_hi);
  out->err_sq = fold8(l);
  _mm256_storeu_pd(l, a->d_lo);
  _mm256_storeu_pd(l + 4, a->d_hi);
  out->dot = fold8(l);
  _mm256_storeu_pd(l, a->m_lo);
  _mm256_storeu_pd(l + 4, a->m_hi);
  float m = 0;
  for (int j = 0; j < 8; j++) {
    float v = (float)l[j];
    if (v > m) m = v;
  }
  out->max_abs_err = m;
  out->nonfinite = a->nonfinite;
}

// 32 codes (0-255) in four vectors of 8 Int32, in order, as 32 bytes.
AVX2 static INLINE __m256i bytes32(__m256i c0, __m256i c1, __m256i c2, __m256i c3) {
  __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The error sums of one row (weights `x` as stored, reconstruction `r`), in their own
// loop so the ten accumulators stay in registers. `finite`: every weight and
// reconstruction of the row is known to be finite, so no pair needs masking.
AVX2 static INLINE void error_row(const void *x, const float *r, size_t columns, int dtype, int finite,
                                  sck_error_stats *stats) {
  error8 acc;
  error8_init(&acc);
  if (finite) {
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d r_lo = acc.r_lo, r_hi = acc.r_hi, o_lo = acc.o_lo, o_hi = acc.o_hi, e_lo = acc.e_lo, e_hi = acc.e_hi;
    __m256d d_lo = acc.d_lo, d_hi = acc.d_hi, m_lo = acc.m_lo, m_hi = acc.m_hi;
    // The low then the high four lanes, each through two temporaries: the ten
    // accumulators, the mask and the temporaries fit the sixteen registers.
    for (size_t i = 0; i < columns; i += 8) {
      __m256 v = load8(x, i, dtype);
      __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), b = _mm256_cvtps_pd(_mm_loadu_ps(r + i));
      r_lo = _mm256_fmadd_pd(a, a, r_lo);
      o_lo = _mm256_fmadd_pd(b, b, o_lo);
      d_lo = _mm256_fmadd_pd(a, b, d_lo);
      a = _mm256_sub_pd(a, b);
      e_lo = _mm256_add_pd(e_lo, _mm256_mul_pd(a, a));
      m_lo = _mm256_max_pd(m_lo, _mm256_and_pd(a, abs_mask));
      a = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      b = _mm256_cvtps_pd(_mm_loadu_ps(r + i + 4));
      r_hi = _mm256_fmadd_pd(a, a, r_hi);
      o_hi = _mm256_fmadd_pd(b, b, o_hi);
      d_hi = _mm256_fmadd_pd(a, b, d_hi);
      a = _mm256_sub_pd(a, b);
      e_hi = _mm256_add_pd(e_hi, _mm256_mul_pd(a, a));
      m_hi = _mm256_max_pd(m_hi, _mm256_and_pd(a, abs_mask));
    }
    acc.r_lo = r_lo, acc.r_hi = r_hi, acc.o_lo = o_lo, acc.o_hi = o_hi, acc.e_lo = e_lo, acc.e_hi = e_hi;
    acc.d_lo = d_lo, acc.d_hi = d_hi, acc.m_lo = m_lo, acc.m_hi = m_hi;
  } else {
    for (size_t i = 0; i < columns; i += 8) error8_add(&acc, load8(x, i, dtype), _mm256_loadu_ps(r + i));
  }
  error8_finish(&acc, stats);
}

// Out of line, one per dtype: their registers are allocated apart from the quantizer's.
AVX2 static __attribute__((noinline)) void error_row_f32(const void *x, const float *r, size_t columns, int finite,
                                                         sck_error_stats *stats) {
  error_row(x, r, columns, 0, finite, stats);
}
AVX2 static __attribute__((noinline)) void error_row_bf16(const void *x, const float *r, size_t columns, int finite,
                                                          sck_error_stats *stats) {
  error_row(x, r, columns, 1, finite, stats);
}

// The group's max |w| on the bit patterns (for finite values the same order as the
// values); a NaN or infinity takes the scalar rule (max(|w|, lane) lanes, then fmaxf).
// `*nonfinite` is set when it did.
AVX2 static INLINE float group_amax(const void *x, size_t start, size_t group, int dtype, int *nonfinite) {
  const __m256i abs_bits = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i m;
  if (dtype == 1) {  // BF16: the maximum of the 16-bit patterns, widened once at the end
    __m256i h = _mm256_setzero_si256();
    for (size_t i = start; i < start + group; i += 16) {
      __m256i w = _mm256_loadu_si256((const __m256i *)((const uint16_t *)x + i));
      h = _mm256_max_epu16(_mm256_and_si256(w, _mm256_set1_epi16(0x7FFF)), h);
    }
    m = _mm256_max_epu32(_mm256_slli_epi32(h, 16), _mm256_andnot_si256(_mm256_set1_epi32(0xFFFF), h));
  } else {
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    for (size_t i = start; i < start + group; i += 16) {
      m0 = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(load8(x, i, dtype)), abs_bits), m0);
      m1 = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(load8(x, i + 8, dtype)), abs_bits), m1);
    }
    m = _mm256_max_epu32(m0, m1);
  }
  // the maximum of the eight lanes, in every lane
  m = _mm256_max_epu32(m, _mm256_permute2x128_si256(m, m, 1));
  m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0x4E));
  m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0xB1));
  uint32_t top = (uint32_t)_mm256_cvtsi256_si32(m);
  float amax;
  if (top < 0x7F800000u) {
    memcpy(&amax, &top, 4);
    return amax;
  }
  float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = start; i < start + group; i += 8) {
    float w[8];
    _mm256_storeu_ps(w, load8(x, i, dtype));
    for (int j = 0; j < 8; j++) {
      float a = fabsf(w[j]);
      l[j] = a > l[j] ? a : l[j];
    }
  }
  amax = 0;
  for (int j = 0; j < 8; j++) amax = fmaxf(amax, l[j]);
  *nonfinite = 1;
  return amax;
}

// One row of symmetric integer quantization (see sck_quantize_int_rows), for constant
// `bits` (4 or 8) and `dtype` (0 or 1) after inlining; `group` is a multiple of 32 and
// `recon` a scratch row.
AVX2 static INLINE void int_row_avx2(const void *x, size_t columns, size_t group, int bits, int dtype, float epsilon,
                                     uint8_t *out, float *scales, float *recon, sck_error_stats *stats) {
  const float qmin = (float)(-(1 << (bits - 1))), qmax = (float)((1 << (bits - 1)) - 1);
  const float half = (qmax - qmin) / 2;
  const __m256 vqmin = _mm256_set1_ps(qmin), vqmax = _mm256_set1_ps(qmax);
  const __m256 voffset = _mm256_set1_ps((float)(1 << (bits - 1)));
  const __m256i abs_bits = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i row_max = _mm256_setzero_si256();  // max |bits| of weights and reconstructions
  for (size_t g = 0, start = 0; start < columns; g++, start += group) {
    int nonfinite = 0;
    const float amax = group_amax(x, start, group, dtype, &nonfinite);
    if (nonfinite) row_max = _mm256_set1_epi32(0x7F800000);
    float scale = amax / half;
    if (dtype == 1) scale = sck_bf16_round(scale);
    if (scale == 0) scale = epsilon;
    scales[g] = scale;
    const __m256 vs = _mm256_set1_ps(scale);
    // BF16, 4 bits: the sixteen reconstructions r(q x s) of the group, looked up by code
    // (the same values, but +0 where q is -0: no error sum can tell them apart).
    const int table = dtype == 1 && bits == 4;
    __m256 low = vs, high = vs;
    if (table) {
      low = sck_bf16_round8(_mm256_mul_ps(_mm256_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1), vs));
      high = sck_bf16_round8(_mm256_mul_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), vs));
      row_max = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(low), abs_bits), row_max);
      row_max = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(high), abs_bits), row_max);
    }
    for (size_t i = start; i < start + group; i += 32) {
      __m256i c[4];
      for (int k = 0; k < 4; k++) {
        __m256 v = load8(x, i + 8 * (size_t)k, dtype);
        __m256 s = _mm256_div_ps(v, vs);
        if (dtype == 1) s = sck_bf16_round8(s);
        // fmaxf(s, qmin) (NaN -> qmin), then fminf(., qmax), then round half to even.
        __m256 q = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(s, vqmin), vqmax),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        c[k] = _mm256_cvttps_epi32(_mm256_add_ps(q, voffset));
        __m256 r;
        if (table) {
          r = _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, c[k]), _mm256_permutevar8x32_ps(high, c[k]),
                               _mm256_castsi256_ps(_mm256_slli_epi32(c[k], 28)));
        } else {
          r = _mm256_mul_ps(q, vs);
          if (dtype == 1) r = sck_bf16_round8(r);
          row_max = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(r), abs_bits), row_max);
        }
        _mm256_storeu_ps(recon + i + 8 * (size_t)k, r);
      }
      __m256i b = bytes32(c[0], c[1], c[2], c[3]);
      if (bits == 8) {
        _mm256_storeu_si256((__m256i *)(out + i), b);
      } else {  // two codes a byte, the even element in the low nibble (little-endian words)
        __m256i pairs = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001));
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
        _mm_storeu_si128((__m128i *)(out + i / 2), _mm256_castsi256_si128(packed));
      }
    }
  }
  uint32_t lanes[8];
  _mm256_storeu_si256((__m256i *)lanes, row_max);
  int finite = 1;
  for (int j = 0; j < 8; j++) finite &= lanes[j] < 0x7F800000u;
  if (dtype == 1) {
    error_row_bf16(x, recon, columns, finite, stats);
  } else {
    error_row_f32(x, recon, columns, finite, stats);
  }
}

// mx_exponent of quantize.c.
static INLINE uint8_t mx_exponent1(float amax) {
  uint32_t u;
  memcpy(&u, &amax, 4);
  if (!(amax > 0) || (u & 0x7F800000u) == 0x7F800000u) return 0;
  int e = (int)(u >> 23) - 127 + ((u & 0x7FFFFFu) >= 0x600000u ? 1 : 0) + 127 - 2;
  return (uint8_t)(e < 0 ? 0 : e > 254 ? 254 : e);
}

// One row of MXFP4 (see sck_quantize_mxfp4_rows). The scale is a power of two 2^(e-127)
// and so is its reciprocal (e in 0...254), so x * 2^(127-e) is the same correctly rounded
// quotient as x / 2^(e-127).
AVX2 static INLINE void mxfp4_row_avx2(const void *x, size_t columns, int dtype, uint8_t *exponents, uint8_t *out,
                                       float *recon, sck_error_stats *stats) {
  const __m256 six = _mm256_set1_ps(6.0f), minus_six = _mm256_set1_ps(-6.0f);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i sign_bit = _mm256_set1_epi32((int)0x80000000u);
  const __m256 magnitudes = _mm256_setr_ps(0, 0.5f, 1, 1.5f, 2, 3, 4, 6);
  const __m256 t1 = _mm256_set1_ps(0.25f), t2 = _mm256_set1_ps(0.75f), t3 = _mm256_set1_ps(1.25f);
  const __m256 t4 = _mm256_set1_ps(1.75f), t5 = _mm256_set1_ps(2.5f), t6 = _mm256_set1_ps(3.5f);
  const __m256 t7 = _mm256_set1_ps(5.0f);
  int nonfinite = 0;
  __m256i row_max = _mm256_setzero_si256();  // max |bits| of the reconstructions
  for (size_t g = 0, start = 0; start < columns; g++, start += 32) {
    const uint8_t e = mx_exponent1(group_amax(x, start, 32, dtype, &nonfinite));
    exponents[g] = e;
    uint32_t scale_bits = e > 0 ? (uint32_t)e << 23 : 0x00400000u;           // 2^(e - 127)
    uint32_t inverse_bits = e < 254 ? (uint32_t)(254 - e) << 23 : 0x00400000u;  // 2^(127 - e)
    float scale, inverse;
    memcpy(&scale, &scale_bits, 4);
    memcpy(&inverse, &inverse_bits, 4);
    const __m256 vs = _mm256_set1_ps(scale), vi = _mm256_set1_ps(inverse);
    __m256i c[4];
    for (int k = 0; k < 4; k++) {
      const size_t i = start + 8 * (size_t)k;
      __m256 s = _mm256_mul_ps(load8(x, i, dtype), vi);
      if (dtype == 1) s = sck_bf16_round8(s);
      // fmaxf(s, -6) (NaN -> -6), fminf(., 6); then E2M1 by comparisons, as e2m1_round.
      __m256 v = _mm256_min_ps(_mm256_max_ps(s, minus_six), six);
      __m256 a = _mm256_and_ps(v, abs_mask);
      __m256i n = _mm256_castps_si256(_mm256_cmp_ps(a, t1, _CMP_GT_OQ));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t2, _CMP_GE_OQ)));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t3, _CMP_GT_OQ)));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t4, _CMP_GE_OQ)));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t5, _CMP_GT_OQ)));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t6, _CMP_GE_OQ)));
      n = _mm256_add_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(a, t7, _CMP_GT_OQ)));
      __m256i index = _mm256_sub_epi32(_mm256_setzero_si256(), n);  // 0...7
      __m256i sign = _mm256_and_si256(_mm256_castps_si256(v), sign_bit);
      __m256 value = _mm256_castsi256_ps(
          _mm256_or_si256(_mm256_castps_si256(_mm256_permutevar8x32_ps(magnitudes, index)), sign));
      c[k] = _mm256_or_si256(index, _mm256_srli_epi32(sign, 28));
      __m256 r = _mm256_mul_ps(value, vs);
      row_max = _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(r), _mm256_castps_si256(abs_mask)), row_max);
      _mm256_storeu_ps(recon + i, r);
    }
    __m256i pairs = _mm256_maddubs_epi16(bytes32(c[0], c[1], c[2], c[3]), _mm256_set1_epi16(0x1001));
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
    _mm_storeu_si128((__m128i *)(out + start / 2), _mm256_castsi256_si128(packed));
  }
  uint32_t lanes[8];
  _mm256_storeu_si256((__m256i *)lanes, row_max);
  int finite = !nonfinite;
  for (int j = 0; j < 8; j++) finite &= lanes[j] < 0x7F800000u;
  if (dtype == 1) {
    error_row_bf16(x, recon, columns, finite, stats);
  } else {
    error_row_f32(x, recon, columns, finite, stats);
  }
}

#define MXFP4_ROWS(name, DTYPE)                                                                           \
  AVX2 static void name(const void *x, size_t rows, size_t columns, uint8_t *exponents, uint8_t *packed,  \
                        float *recon, sck_error_stats *stats) {                                           \
    for (size_t r = 0; r < rows; r++) {                                                                   \
      const void *row = DTYPE == 1 ? (const void *)((const uint16_t *)x + r * columns)                    \
                                   : (const void *)((const float *)x + r * columns);                      \
      mxfp4_row_avx2(row, columns, DTYPE, exponents + r * (columns / 32), packed + r * (columns / 2), recon, \
                     stats + r);                                                                          \
    }                                                                                                     \
  }
MXFP4_ROWS(mxfp4_rows_f32, 0)
MXFP4_ROWS(mxfp4_rows_bf16, 1)

#define INT_ROWS(name, BITS, DTYPE)                                                                       \
  AVX2 static void name(const void *x, size_t rows, size_t columns, size_t group, float epsilon,          \
                        uint8_t *packed, float *scales, float *recon, sck_error_stats *stats) {           \
    const size_t groups = columns / group, row_bytes = columns * BITS / 8;                                \
    for (size_t r = 0; r < rows; r++) {                                                                   \
      const void *row = DTYPE == 1 ? (const void *)((const uint16_t *)x + r * columns)                    \
                                   : (const void *)((const float *)x + r * columns);                      \
      int_row_avx2(row, columns, group, BITS, DTYPE, epsilon, packed + r * row_bytes, scales + r * groups, \
                   recon, stats + r);                                                                     \
    }                                                                                                     \
  }
INT_ROWS(int4_rows_f32, 4, 0)
INT_ROWS(int4_rows_bf16, 4, 1)
INT_ROWS(int8_rows_f32, 8, 0)
INT_ROWS(int8_rows_bf16, 8, 1)
#endif

int sck_quantize_int_rows(const void *x, size_t rows, size_t columns, size_t group, int bits, int dtype,
                          float epsilon, uint8_t *packed, float *scales, sck_error_stats *stats) {
  if ((bits != 4 && bits != 8) || (dtype != 0 && dtype != 1) || group == 0 || columns % group != 0) return -1;
#if SCK_X86
  if (sck_simd_level() && group % 32 == 0) {
    void (*kernel)(const void *, size_t, size_t, size_t, float, uint8_t *, float *, float *, sck_error_stats *) =
        bits == 4 ? (dtype == 1 ? int4_rows_bf16 : int4_rows_f32) : (dtype == 1 ? int8_rows_bf16 : int8_rows_f32);
    float *recon = malloc(columns * sizeof(float));
    if (!recon) return -1;
    kernel(x, rows, columns, group, epsilon, packed, scales, recon, stats);
    free(recon);
    return 0;
  }
#endif
  return int_rows_stepwise(x, rows, columns, group, bits, dtype, epsilon, packed, scales, stats);
}

int sck_quantize_mxfp4_rows(const void *x, size_t rows, size_t columns, int dtype, uint8_t *exponents,
                            uint8_t *packed, sck_error_stats *stats) {
  if ((dtype != 0 && dtype != 1) || columns % 32 != 0) return -1;
#if SCK_X86
  if (sck_simd_level()) {
    float *recon = malloc(columns * sizeof(float));
    if (!recon) return -1;
    (dtype == 1 ? mxfp4_rows_bf16 : mxfp4_rows_f32)(x, rows, columns, exponents, packed, recon, stats);
    free(recon);
    return 0;
  }
#endif
  return mxfp4_rows_stepwise(x, rows, columns, dtype, exponents, packed, stats);
}
