// The forward pass's transcendental loops: exp for the attention softmax and SiLU.
//
// One algorithm for both paths, so the AVX2+FMA path and the portable path give the
// same bits: n = rint(x * log2(e)); r = x - n ln2 (two fused steps, ln2 split in a
// float head and tail); exp(r) by Cephes' degree-6 polynomial on |r| <= ln2/2 (Horner
// with fused multiply-adds: fmaf in the portable path); times 2^n applied as two
// powers of two, so results down to the subnormals are scaled once each and x below
// -104 gives 0, x above 88.8 gives inf. NaN gives NaN. Within 2 ulp of expf (the
// test measures the relative error over the float range).
#include "CKernels.h"

#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

#if defined(__x86_64__) || defined(__i386__)
#define SCK_X86 1
#include <immintrin.h>
#else
#define SCK_X86 0
#endif

#define EXP_LO -104.0f
#define EXP_HI 88.8f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693147182464599609375f     // float(ln 2)
#define LN2_LO -1.904654323148236e-09f      // ln 2 - LN2_HI
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

static inline float pow2i(int n) {
  uint32_t u = (uint32_t)(n + 127) << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline float exp_scalar(float x) {
  if (x != x) return x;
  x = x < EXP_LO ? EXP_LO : (x > EXP_HI ? EXP_HI : x);
  float n = rintf(x * LOG2E);
  float r = fmaf(n, -LN2_HI, x);
  r = fmaf(n, -LN2_LO, r);
  float p = fmaf(P0, r, P1);
  p = fmaf(p, r, P2);
  p = fmaf(p, r, P3);
  p = fmaf(p, r, P4);
  p = fmaf(p, r, P5);
  float y = fmaf(p, r * r, r) + 1.0f;
  int k = (int)n;
  int k1 = k >> 1;  // floor(k / 2): both halves stay within the normal exponents
  return y * pow2i(k1) * pow2i(k - k1);
}

#if SCK_X86
#define AVX __attribute__((target("avx2,fma")))

AVX static inline __m256 exp8(__m256 x) {
  __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 c = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), c);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i k = _mm256_cvtps_epi32(n);
  __m256i k1 = _mm256_srai_epi32(k, 1);
  __m256i k2 = _mm256_sub_epi32(k, k1);
  __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
  return _mm256_blendv_ps(y, x, nan);
}

AVX static void exp_avx2(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = exp_scalar(x[i]);
}

AVX static void softmax_avx2(float *x, size_t n) {
  size_t i = 0;
  __m256 top8 = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(x + i));
  float lanes[8];
  _mm256_storeu_ps(lanes, top8);
  float top = -INFINITY;
  for (int l = 0; l < 8; l++) top = lanes[l] > top ? lanes[l] : top;
  for (; i < n; i++) top = x[i] > top ? x[i] : top;
  __m256 shift = _mm256_set1_ps(top);
  __m256 sum8 = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), shift));
    _mm256_storeu_ps(x + i, e);
    sum8 = _mm256_add_ps(sum8, e);
  }
  _mm256_storeu_ps(lanes, sum8);
  for (; i < n; i++) {
    x[i] = exp_scalar(x[i] - top);
    lanes[i % 8] += x[i];
  }
  float sum = 0;
  for (int l = 0; l < 8; l++) sum += lanes[l];
  float inverse = 1.0f / sum;
  __m256 inverse8 = _mm256_set1_ps(inverse);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inverse8));
  for (; i < n; i++) x[i] *= inverse;
}

AVX static void silu_avx2(float *g, const float *u, size_t n) {
  size_t i = 0;
  __m256 one = _mm256_set1_ps(1.0f);
  __m256 zero = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(g + i);
    __m256 s = _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v))));
    if (u) s = _mm256_mul_ps(s, _mm256_loadu_ps(u + i));
    _mm256_storeu_ps(g + i, s);
  }
  for (; i < n; i++) {
    float s = g[i] / (1.0f + exp_scalar(-g[i]));
    g[i] = u ? s * u[i] : s;
  }
}
#endif

static void softmax_portable(float *x, size_t n) {
  float top = -INFINITY;
  float lanes[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  size_t full = n / 8 * 8;
  for (size_t i = 0; i < full; i++) lanes[i % 8] = x[i] > lanes[i % 8] ? x[i] : lanes[i % 8];
  for (int l = 0; l < 8; l++) top = lanes[l] > top ? lanes[l] : top;
  for (size_t i = full; i < n; i++) top = x[i] > top ? x[i] : top;
  for (int l = 0; l < 8; l++) lanes[l] = 0;
  for (size_t i = 0; i < n; i++) {
    x[i] = exp_scalar(x[i] - top);
    lanes[i % 8] += x[i];
  }
  float sum = 0;
  for (int l = 0; l < 8; l++) sum += lanes[l];
  float inverse = 1.0f / sum;
  for (size_t i = 0; i < n; i++) x[i] *= inverse;
}

void sck_exp_f32(const float *x, float *y, size_t n) {
#if SCK_X86
  if (sck_simd_level()) {
    exp_avx2(x, y, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
}

void sck_softmax_f32(float *x, size_t n) {
  if (n == 0) return;
#if SCK_X86
  if (sck_simd_level()) {
    softmax_avx2(x, n);
    return;
  }
#endif
  softmax_portable(x, n);
}

void sck_silu_f32(float *g, const float *u, size_t n) {
#if SCK_X86
  if (sck_simd_level()) {
    silu_avx2(g, u, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) {
    float s = g[i] / (1.0f + exp_scalar(-g[i]));
    g[i] = u ? s * u[i] : s;
  }
}
