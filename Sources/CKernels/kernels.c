// Hot loops of swiftcompress: dtype conversion and reductions.
//
// Every function has a portable path and, on x86-64 CPUs with AVX2+FMA+F16C, a
// vector path chosen once at run time. Both paths give bit-identical results:
// - conversions are exact or round to nearest even, with the same NaN rule;
// - reductions use one fixed accumulation order, whatever the path: 8 double lanes
//   (element i goes to lane i % 8), added in lane order 0..7 at the end. No fused
//   multiply-add is used.
#include "CKernels.h"

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

// ---- dispatch ----

static int sck_level = -1;  // -1 unknown, 0 portable, 1 AVX2+FMA+F16C
static int sck_forced_portable = 0;

static int detect_level(void) {
  const char *env = getenv("SWIFTCOMPRESS_KERNELS");
  if (env && strcmp(env, "portable") == 0) return 0;
#if SCK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return 1;
#endif
  return 0;
}

static inline int use_simd(void) {
  int level = __atomic_load_n(&sck_level, __ATOMIC_RELAXED);
  if (level < 0) {
    level = detect_level();  // idempotent: a benign race computes the same value
    __atomic_store_n(&sck_level, level, __ATOMIC_RELAXED);
  }
  return level == 1 && !__atomic_load_n(&sck_forced_portable, __ATOMIC_RELAXED);
}

int sck_simd_level(void) { return use_simd(); }

void sck_force_portable_for_testing(int on) { __atomic_store_n(&sck_forced_portable, on ? 1 : 0, __ATOMIC_RELAXED); }

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// ---- scalar conversions (the portable definitions) ----

static inline float f16_to_f32_scalar(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) {
    if (mantissa == 0) return bits_f32(sign | 0x7F800000u);
    return bits_f32(sign | 0x7FC00000u | (mantissa << 13));  // NaN: payload kept, quieted (as F16C does)
  }
  if (exponent != 0) return bits_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_f32(sign);
  // Subnormal: normalise.
  int shift = 0;
  while (!(mantissa & 0x400)) {
    mantissa <<= 1;
    shift++;
  }
  mantissa &= 0x3FF;
  return bits_f32(sign | ((uint32_t)(113 - shift) << 23) | (mantissa << 13));
}

// Round to nearest even. NaN: quiet bit set, payload truncated (as F16C does).
static inline uint16_t f32_to_f16_scalar(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t exponent = (x >> 23) & 0xFF;
  uint32_t mantissa = x & 0x7FFFFF;
  if (exponent == 0xFF) {
    if (mantissa == 0) return (uint16_t)(sign | 0x7C00);
    return (uint16_t)(sign | 0x7C00 | 0x200 | (mantissa >> 13));
  }
  int32_t e = (int32_t)exponent - 127 + 15;
  if (e >= 0x1F) return (uint16_t)(sign | 0x7C00);  // overflow
  if (e <= 0) {
    // Subnormal or zero in half precision.
    if (e < -10) return (uint16_t)sign;  // below half the smallest subnormal: rounds to zero
    uint32_t m = mantissa | 0x800000;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = m >> shift;
    uint32_t remainder = m & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t h = ((uint32_t)e << 10) | (mantissa >> 13);
  uint32_t remainder = mantissa & 0x1FFF;
  if (remainder > 0x1000 || (remainder == 0x1000 && (h & 1))) h++;  // may carry into the exponent, up to inf
  return (uint16_t)(sign | h);
}

static inline uint16_t f32_to_bf16_scalar(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x0040);  // quiet NaN, sign kept
  return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// ---- vector conversions ----

#if SCK_X86
__attribute__((target("avx2,fma,f16c"))) static void f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

__attribute__((target("avx2,fma,f16c"))) static void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
    __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_si256((__m256i *)(dst + i), w);
  }
  for (; i < n; i++) dst[i] = bits_f32((uint32_t)src[i] << 16);
}

__attribute__((target("avx2,fma,f16c"))) static void f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)(dst + i), h);
  }
  for (; i < n; i++) dst[i] = f32_to_f16_scalar(src[i]);
}

__attribute__((target("avx2,fma,f16c"))) static inline __m256i bf16_round8(__m256i x) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i inf = _mm256_set1_epi32(0x7F800000);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
  return _mm256_and_si256(_mm256_blendv_epi8(rounded, nan, is_nan), _mm256_set1_epi32(0xFFFF));
}

__attribute__((target("avx2,fma,f16c"))) static void f32_to_bf16_avx2(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i a = bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i)));
    __m256i b = bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i + 8)));
    // packus works within 128-bit lanes; restore element order with a permute.
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    _mm256_storeu_si256((__m256i *)(dst + i), packed);
  }
  for (; i < n; i++) dst[i] = f32_to_bf16_scalar(src[i]);
}
#endif

void sck_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if SCK_X86
  if (use_simd()) {
    f16_to_f32_avx2(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

void sck_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if SCK_X86
  if (use_simd()) {
    bf16_to_f32_avx2(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)src[i] << 16);
}

void sck_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
#if SCK_X86
  if (use_simd()) {
    f32_to_f16_avx2(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_scalar(src[i]);
}

void sck_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
#if SCK_X86
  if (use_simd()) {
    f32_to_bf16_avx2(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_scalar(src[i]);
}

void sck_lut8_to_f32(const uint8_t *src, const float *table256, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = table256[src[i]];
}

// ---- reductions ----
//
// Sums use 8 double-precision lanes: element i goes to lane i % 8, and the lanes are
// added in order 0..7 at the end. Products of two floats are exact in double, so the
// only roundings are the double additions (and e*e for the error), identical in both
// paths. Non-finite elements are skipped (the vector path adds exact zeros instead,
// which leaves every lane unchanged because lanes start at +0).

static inline int is_finite_bits(uint32_t u) { return (u & 0x7F800000u) != 0x7F800000u; }

static inline float zero_sign(float v) { return v == 0.0f ? 0.0f : v; }

static inline double fold8(const double *lanes) {
  double total = 0;
  for (int j = 0; j < 8; j++) total += lanes[j];
  return total;
}

// The scalar steps, shared by the portable loops and the vector paths' tails so both
// perform exactly the same operations on the same lanes.
typedef struct {
  double sum[8], sum_sq[8];
  float min, max, absmax;
  uint64_t zeros, nans, infs;
} stats_acc;

static inline void stats_init(stats_acc *a) {
  memset(a, 0, sizeof *a);
  a->min = INFINITY;
  a->max = -INFINITY;
}

static inline void stats_step(stats_acc *a, float v, size_t i) {
  uint32_t u = f32_bits(v);
  if (!is_finite_bits(u)) {
    if (u & 0x7FFFFFu) a->nans++;
    else a->infs++;
    return;
  }
  if (v == 0.0f) a->zeros++;
  double d = (double)v;
  a->sum[i & 7] = a->sum[i & 7] + d;
  a->sum_sq[i & 7] = a->sum_sq[i & 7] + d * d;
  if (v < a->min) a->min = v;
  if (v > a->max) a->max = v;
  float m = fabsf(v);
  if (m > a->absmax) a->absmax = m;
}

static inline void stats_finish(const stats_acc *a, sck_stats *out) {
  out->sum = fold8(a->sum);
  out->sum_sq = fold8(a->sum_sq);
  out->min = zero_sign(a->min);
  out->max = zero_sign(a->max);
  out->absmax = a->absmax;
  out->zeros = a->zeros;
  out->nans = a->nans;
  out->infs = a->infs;
}

static void stats_portable(const float *x, size_t n, sck_stats *out) {
  stats_acc a;
  stats_init(&a);
  for (size_t i = 0; i < n; i++) stats_step(&a, x[i], i);
  stats_finish(&a, out);
}

typedef struct {
  double ref_sq[8], out_sq[8], err_sq[8], dot[8];
  float max_err;
  uint64_t nonfinite;
} error_acc;

static inline void error_step(error_acc *a, float r, float o, size_t i) {
  if (!is_finite_bits(f32_bits(r)) || !is_finite_bits(f32_bits(o))) {
    a->nonfinite++;
    return;
  }
  size_t lane = i & 7;
  double dr = (double)r, dO = (double)o;
  double e = dr - dO;
  a->ref_sq[lane] = a->ref_sq[lane] + dr * dr;
  a->out_sq[lane] = a->out_sq[lane] + dO * dO;
  a->err_sq[lane] = a->err_sq[lane] + e * e;
  a->dot[lane] = a->dot[lane] + dr * dO;
  float m = (float)fabs(e);
  if (m > a->max_err) a->max_err = m;
}

static inline void error_finish(const error_acc *a, sck_error_stats *result) {
  result->ref_sq = fold8(a->ref_sq);
  result->out_sq = fold8(a->out_sq);
  result->err_sq = fold8(a->err_sq);
  result->dot = fold8(a->dot);
  result->max_abs_err = a->max_err;
  result->nonfinite = a->nonfinite;
}

static void error_portable(const float *ref, const float *rec, size_t n, sck_error_stats *result) {
  error_acc a;
  memset(&a, 0, sizeof a);
  for (size_t i = 0; i < n; i++) error_step(&a, ref[i], rec[i], i);
  error_finish(&a, result);
}

#if SCK_X86
__attribute__((target("avx2,fma,f16c"))) static inline __m256 finite_mask8(__m256 v) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7F800000);
  __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exp_mask);
  return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(e, exp_mask), _mm256_set1_epi32(-1)));
}

__attribute__((target("avx2,fma,f16c"))) static void stats_avx2(const float *x, size_t n, sck_stats *out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 pos_inf = _mm256_set1_ps(INFINITY), neg_inf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
  __m256 vmin = pos_inf, vmax = neg_inf, vabs = zero;
  __m256d s_lo = _mm256_setzero_pd(), s_hi = s_lo, q_lo = s_lo, q_hi = s_lo;
  uint64_t zeros = 0, nonfinite = 0, nans = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 fin = finite_mask8(v);
    __m256 vf = _mm256_and_ps(v, fin);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(vf));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(vf, 1));
    s_lo = _mm256_add_pd(s_lo, lo);
    s_hi = _mm256_add_pd(s_hi, hi);
    q_lo = _mm256_add_pd(q_lo, _mm256_mul_pd(lo, lo));
    q_hi = _mm256_add_pd(q_hi, _mm256_mul_pd(hi, hi));
    vmin = _mm256_min_ps(vmin, _mm256_blendv_ps(pos_inf, v, fin));
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, v, fin));
    vabs = _mm256_max_ps(vabs, _mm256_and_ps(vf, abs_mask));
    nonfinite += (uint64_t)(8 - __builtin_popcount(_mm256_movemask_ps(fin)));
    nans += (uint64_t)__builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    zeros += (uint64_t)__builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_EQ_OQ)));
  }
  stats_acc a;
  _mm256_storeu_pd(a.sum, s_lo);
  _mm256_storeu_pd(a.sum + 4, s_hi);
  _mm256_storeu_pd(a.sum_sq, q_lo);
  _mm256_storeu_pd(a.sum_sq + 4, q_hi);
  float mins[8], maxs[8], abss[8];
  _mm256_storeu_ps(mins, vmin);
  _mm256_storeu_ps(maxs, vmax);
  _mm256_storeu_ps(abss, vabs);
  a.min = INFINITY;
  a.max = -INFINITY;
  a.absmax = 0;
  for (int j = 0; j < 8; j++) {
    if (mins[j] < a.min) a.min = mins[j];
    if (maxs[j] > a.max) a.max = maxs[j];
    if (abss[j] > a.absmax) a.absmax = abss[j];
  }
  a.zeros = zeros;
  a.nans = nans;
  a.infs = nonfinite - nans;
  for (; i < n; i++) stats_step(&a, x[i], i);  // tail: same lanes and operations as the portable path
  stats_finish(&a, out);
}

__attribute__((target("avx2,fma,f16c"))) static void error_avx2(const float *ref, const float *rec, size_t n,
                                                               sck_error_stats *result) {
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
  __m256d z = _mm256_setzero_pd();
  __m256d r_lo = z, r_hi = z, o_lo = z, o_hi = z, e_lo = z, e_hi = z, d_lo = z, d_hi = z, m_lo = z, m_hi = z;
  uint64_t nonfinite = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 r = _mm256_loadu_ps(ref + i), o = _mm256_loadu_ps(rec + i);
    __m256 fin = _mm256_and_ps(finite_mask8(r), finite_mask8(o));
    r = _mm256_and_ps(r, fin);
    o = _mm256_and_ps(o, fin);
    nonfinite += (uint64_t)(8 - __builtin_popcount(_mm256_movemask_ps(fin)));
    __m256d rl = _mm256_cvtps_pd(_mm256_castps256_ps128(r)), rh = _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1));
    __m256d ol = _mm256_cvtps_pd(_mm256_castps256_ps128(o)), oh = _mm256_cvtps_pd(_mm256_extractf128_ps(o, 1));
    __m256d el = _mm256_sub_pd(rl, ol), eh = _mm256_sub_pd(rh, oh);
    // Products of two floats are exact in double, so a fused multiply-add rounds once,
    // exactly like the portable path's multiply then add. e = r - o need not be exact,
    // so e * e is rounded before it is added, as in the portable path.
    r_lo = _mm256_fmadd_pd(rl, rl, r_lo);
    r_hi = _mm256_fmadd_pd(rh, rh, r_hi);
    o_lo = _mm256_fmadd_pd(ol, ol, o_lo);
    o_hi = _mm256_fmadd_pd(oh, oh, o_hi);
    e_lo = _mm256_add_pd(e_lo, _mm256_mul_pd(el, el));
    e_hi = _mm256_add_pd(e_hi, _mm256_mul_pd(eh, eh));
    d_lo = _mm256_fmadd_pd(rl, ol, d_lo);
    d_hi = _mm256_fmadd_pd(rh, oh, d_hi);
    m_lo = _mm256_max_pd(m_lo, _mm256_and_pd(el, abs_mask));
    m_hi = _mm256_max_pd(m_hi, _mm256_and_pd(eh, abs_mask));
  }
  error_acc a;
  _mm256_storeu_pd(a.ref_sq, r_lo);
  _mm256_storeu_pd(a.ref_sq + 4, r_hi);
  _mm256_storeu_pd(a.out_sq, o_lo);
  _mm256_storeu_pd(a.out_sq + 4, o_hi);
  _mm256_storeu_pd(a.err_sq, e_lo);
  _mm256_storeu_pd(a.err_sq + 4, e_hi);
  _mm256_storeu_pd(a.dot, d_lo);
  _mm256_storeu_pd(a.dot + 4, d_hi);
  double lm[8];
  _mm256_storeu_pd(lm, m_lo);
  _mm256_storeu_pd(lm + 4, m_hi);
  a.max_err = 0;
  for (int j = 0; j < 8; j++) {
    float m = (float)lm[j];
    if (m > a.max_err) a.max_err = m;
  }
  a.nonfinite = nonfinite;
  for (; i < n; i++) error_step(&a, ref[i], rec[i], i);
  error_finish(&a, result);
}
#endif

void sck_stats_f32(const float *x, size_t n, sck_stats *out) {
#if SCK_X86
  if (use_simd()) {
    stats_avx2(x, n, out);
    return;
  }
#endif
  stats_portable(x, n, out);
}

void sck_error_stats_f32(const float *ref, const float *out, size_t n, sck_error_stats *result) {
#if SCK_X86
  if (use_simd()) {
    error_avx2(ref, out, n, result);
    return;
  }
#endif
  error_portable(ref, out, n, result);
}

// ---- absolute maximum ----
//
// On the bit patterns: for finite floats |x| orders like its bits with the sign cleared,
// so the maximum is an exact integer maximum (the same in both builds).

#define ABSMAX_BODY                                                                                       \
  uint32_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0}, bad[8] = {0, 0, 0, 0, 0, 0, 0, 0};                        \
  size_t i = 0;                                                                                           \
  for (; i + 8 <= n; i += 8)                                                                              \
    for (int j = 0; j < 8; j++) {                                                                         \
      uint32_t a = f32_bits(x[i + j]) & 0x7FFFFFFFu;                                                      \
      uint32_t finite = a < 0x7F800000u;                                                                  \
      uint32_t v = finite ? a : 0;                                                                        \
      lanes[j] = v > lanes[j] ? v : lanes[j];                                                             \
      bad[j] += 1u - finite;                                                                              \
    }                                                                                                     \
  uint32_t m = 0;                                                                                         \
  uint64_t count = 0;                                                                                     \
  for (; i < n; i++) {                                                                                    \
    uint32_t a = f32_bits(x[i]) & 0x7FFFFFFFu;                                                            \
    if (a < 0x7F800000u) m = a > m ? a : m;                                                               \
    else count++;                                                                                         \
  }                                                                                                       \
  for (int j = 0; j < 8; j++) {                                                                           \
    m = lanes[j] > m ? lanes[j] : m;                                                                      \
    count += bad[j];                                                                                      \
  }                                                                                                       \
  *nonfinite += count;                                                                                    \
  return bits_f32(m);

// n below 2^32 * 8, so the 32-bit lane counters cannot overflow (the caller chunks).
static float absmax_portable(const float *x, size_t n, uint64_t *nonfinite) { ABSMAX_BODY }
#if SCK_X86
__attribute__((target("avx2,fma,f16c"))) static float absmax_avx2(const float *x, size_t n, uint64_t *nonfinite) {
  ABSMAX_BODY
}
#endif

float sck_absmax_f32(const float *x, size_t n, uint64_t *nonfinite) {
  float m = 0;
  for (size_t start = 0; start < n; start += (size_t)1 << 30) {
    size_t count = n - start < ((size_t)1 << 30) ? n - start : ((size_t)1 << 30);
    float part;
#if SCK_X86
    if (use_simd()) part = absmax_avx2(x + start, count, nonfinite);
    else
#endif
      part = absmax_portable(x + start, count, nonfinite);
    m = part > m ? part : m;
  }
  return m;
}
