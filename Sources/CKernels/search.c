// The MSE clipping search of integer group quantization (quantize --scale-search mse),
// vectorised across the candidate clipping factors: lane k of the vectors holds factor
// k's scale, and each element's squared error is added to lane k's double sum in element
// order, so every candidate's sum is the same sequence of IEEE operations as the Swift
// search's (IntegerPackCodec), which stays the portable path. Every scalar step below
// repeats that search's expressions in its order, with Swift's min and max (ties pick
// the first argument for min, the second for max) and its rounding to the stored dtype.
#include "CKernels.h"
#include "rounding.h"

#include <math.h>

#pragma clang fp contract(off)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// DTypeRounding of the Swift search, for the two dtypes the kernel takes: identity for
// Float32, round to nearest even on the bit pattern for BFloat16.
static inline float round_dtype(float x, int dtype) { return SCK_ROUND(dtype, x); }

static inline float swift_min(float x, float y) { return y < x ? y : x; }
static inline float swift_max(float x, float y) { return y >= x ? y : x; }

typedef struct {
  float scale, zero_point;
} int_parameters;

// The group's range as `parameters` scans it: max |v| (symmetric), or the minimum and
// maximum with 0, in element order.
typedef struct {
  float amax, low, high;
} group_range;

static group_range scan(const float *v, size_t n, int symmetric) {
  group_range r = {0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    if (symmetric) {
      r.amax = swift_max(r.amax, fabsf(v[i]));
    } else {
      r.low = swift_min(r.low, v[i]);
      r.high = swift_max(r.high, v[i]);
    }
  }
  return r;
}

// `parameters(values, range, alpha:)` of IntegerPackCodec.encode, from the group's scan.
static int_parameters parameters(group_range range, float alpha, float qmin, float qmax, int symmetric, int dtype,
                                 float epsilon) {
  int_parameters p = {0, 0};
  if (symmetric) {
    float scale = round_dtype(alpha * range.amax / ((qmax - qmin) / 2), dtype);
    p.scale = scale == 0 ? epsilon : scale;
    return p;
  }
  float low = alpha * range.low, high = alpha * range.high;
  float scale = round_dtype(round_dtype(high - low, dtype) / (qmax - qmin), dtype);
  if (scale == 0) {
    p.scale = epsilon;
    return p;
  }
  p.scale = scale;
  p.zero_point =
      rintf(swift_min(swift_max(round_dtype(qmin - round_dtype(low / scale, dtype), dtype), qmin), qmax));
  return p;
}

// IntegerCodeRule.code and .value.
static inline float int_code(float value, int_parameters p, float qmin, float qmax, int symmetric, int dtype) {
  float scaled = round_dtype(value / p.scale, dtype);
  if (!symmetric) scaled = round_dtype(scaled + p.zero_point, dtype);
  return rintf(swift_min(swift_max(scaled, qmin), qmax));
}
static inline float int_value(float q, int_parameters p, int dtype) {
  return round_dtype(round_dtype(q - p.zero_point, dtype) * p.scale, dtype);
}

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// round_dtype on 8 lanes.
AVX2 static inline __m256 round_dtype8(__m256 x, int dtype) { return dtype == 1 ? sck_bf16_round8(x) : x; }

#define MAX_CANDIDATES 64

AVX2 static int int_mse_row_avx2(const float *values, size_t groups, size_t group, int bits, int symmetric, int dtype,
                                 float epsilon, const float *alphas, size_t count, float *scales, float *zero_points,
                                 uint8_t *codes, float *recon, float *alternative) {
  const float qmin = (float)(-(1 << (bits - 1))), qmax = (float)((1 << (bits - 1)) - 1);
  const float offset = (float)(1 << (bits - 1));
  const size_t vectors = (count + 7) / 8;
  const __m256 vqmin = _mm256_set1_ps(qmin), vqmax = _mm256_set1_ps(qmax);
  float lane_scale[MAX_CANDIDATES], lane_zero[MAX_CANDIDATES];
  double sums[MAX_CANDIDATES];
  int_parameters candidates[MAX_CANDIDATES];
  for (size_t g = 0; g < groups; g++) {
    const float *v = values + g * group;
    const group_range range = scan(v, group, symmetric);
    for (size_t k = 0; k < vectors * 8; k++) {
      candidates[k] = parameters(range, alphas[k < count ? k : 0], qmin, qmax, symmetric, dtype, epsilon);
      lane_scale[k] = candidates[k].scale;
      lane_zero[k] = candidates[k].zero_point;
    }
    __m256d acc[2 * MAX_CANDIDATES / 8];
    for (size_t j = 0; j < 2 * vectors; j++) acc[j] = _mm256_setzero_pd();
    for (size_t i = 0; i < group; i++) {
      const __m256 x = _mm256_set1_ps(v[i]);
      const __m256d xd = _mm256_set1_pd((double)v[i]);
      for (size_t j = 0; j < vectors; j++) {
        const __m256 s = _mm256_loadu_ps(lane_scale + 8 * j);
        __m256 scaled = round_dtype8(_mm256_div_ps(x, s), dtype);
        __m256 r;
        if (symmetric) {
          __m256 q = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(scaled, vqmin), vqmax),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          r = round_dtype8(_mm256_mul_ps(q, s), dtype);  // q - 0 is q, already in the dtype
        } else {
          const __m256 z = _mm256_loadu_ps(lane_zero + 8 * j);
          scaled = round_dtype8(_mm256_add_ps(scaled, z), dtype);
          __m256 q = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(scaled, vqmin), vqmax),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          r = round_dtype8(_mm256_mul_ps(round_dtype8(_mm256_sub_ps(q, z), dtype), s), dtype);
        }
        __m256d lo = _mm256_sub_pd(xd, _mm256_cvtps_pd(_mm256_castps256_ps128(r)));
        __m256d hi = _mm256_sub_pd(xd, _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)));
        acc[2 * j] = _mm256_add_pd(acc[2 * j], _mm256_mul_pd(lo, lo));
        acc[2 * j + 1] = _mm256_add_pd(acc[2 * j + 1], _mm256_mul_pd(hi, hi));
      }
    }
    for (size_t j = 0; j < 2 * vectors; j++) _mm256_storeu_pd(sums + 4 * j, acc[j]);
    size_t best = 0;
    for (size_t k = 1; k < count; k++) {
      if (sums[k] < sums[best]) best = k;
    }
    const int_parameters chosen = candidates[best], reference = candidates[0];
    scales[g] = chosen.scale;
    if (!symmetric) zero_points[g] = chosen.zero_point;
    for (size_t i = 0; i < group; i++) {
      const size_t e = g * group + i;
      const float q = int_code(v[i], chosen, qmin, qmax, symmetric, dtype);
      codes[e] = (uint8_t)(int)(q + offset);
      recon[e] = int_value(q, chosen, dtype);
      alternative[e] = int_value(int_code(v[i], reference, qmin, qmax, symmetric, dtype), reference, dtype);
    }
  }
  return 0;
}
#endif

int sck_int_mse_row(const float *values, size_t groups, size_t group, int bits, int symmetric, int dtype,
                    float epsilon, const float *alphas, size_t count, float *scales, float *zero_points,
                    uint8_t *codes, float *recon, float *alternative) {
#if defined(__x86_64__) || defined(__i386__)
  if (sck_simd_level() && (dtype == 0 || dtype == 1) && bits >= 2 && bits <= 8 && count >= 1 &&
      count <= MAX_CANDIDATES && group > 0) {
    return int_mse_row_avx2(values, groups, group, bits, symmetric, dtype, epsilon, alphas, count, scales,
                            zero_points, codes, recon, alternative);
  }
#endif
  (void)values, (void)groups, (void)group, (void)bits, (void)symmetric, (void)dtype, (void)epsilon, (void)alphas;
  (void)count, (void)scales, (void)zero_points, (void)codes, (void)recon, (void)alternative;
  return -1;
}
