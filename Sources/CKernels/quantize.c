// Integer group quantization, bit for bit as compressed-tensors computes it.
//
// The loop body is plain scalar C compiled twice: once for baseline x86-64 (or any CPU)
// and once with AVX2/FMA/F16C enabled, which the compiler vectorises. IEEE division,
// round-half-even and the dtype roundings are exact operations, so both builds give the
// same bits; no FMA contraction is allowed.
#include "CKernels.h"
#include "rounding.h"

#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

// Each arithmetic result rounded to the weight's dtype, as PyTorch computes BF16/F16 ops.
#define ROUND(dtype, v) SCK_ROUND(dtype, v)

#define QUANTIZE_BODY                                                                                     \
  const float qmin = (float)(-(1 << (bits - 1))), qmax = (float)((1 << (bits - 1)) - 1);                  \
  const float offset = (float)(1 << (bits - 1));                                                          \
  for (size_t g = 0; g < groups; g++) {                                                                   \
    const float *v = x + g * group;                                                                       \
    float scale, zp = 0;                                                                                  \
    if (symmetric) {                                                                                      \
      float amax = absmax(v, group);                                                                      \
      scale = ROUND(dtype, amax / ((qmax - qmin) / 2));                                                   \
      if (scale == 0) scale = epsilon;                                                                    \
    } else {                                                                                              \
      float low, high;                                                                                    \
      minmax(v, group, &low, &high);                                                                      \
      scale = ROUND(dtype, ROUND(dtype, high - low) / (qmax - qmin));                                     \
      if (scale == 0) {                                                                                   \
        scale = epsilon;                                                                                  \
      } else {                                                                                            \
        float z = ROUND(dtype, qmin - ROUND(dtype, low / scale));                                         \
        zp = __builtin_roundevenf(fminf(fmaxf(z, qmin), qmax));                                           \
      }                                                                                                   \
      zero_points[g] = zp;                                                                                \
    }                                                                                                     \
    scales[g] = scale;                                                                                    \
    uint8_t *c = codes + g * group;                                                                       \
    float *r = recon + g * group;                                                                         \
    for (size_t i = 0; i < group; i++) {                                                                  \
      float s = ROUND(dtype, v[i] / scale);                                                               \
      if (!symmetric) s = ROUND(dtype, s + zp);                                                           \
      float q = __builtin_roundevenf(fminf(fmaxf(s, qmin), qmax));                                        \
      c[i] = (uint8_t)(int)(q + offset);                                                                  \
      r[i] = ROUND(dtype, ROUND(dtype, q - zp) * scale);                                                  \
    }                                                                                                     \
  }

// max |v[i]| over n values, in 8 independent lanes so the compiler can vectorise it
// without reassociating anything (max is exact, so the result is the same).
#define ABSMAX_BODY                                                                                       \
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                              \
  size_t i = 0;                                                                                           \
  for (; i + 8 <= n; i += 8)                                                                              \
    for (int j = 0; j < 8; j++) {                                                                         \
      float a = fabsf(v[i + j]);                                                                          \
      lanes[j] = a > lanes[j] ? a : lanes[j];                                                             \
    }                                                                                                     \
  float m = 0;                                                                                            \
  for (; i < n; i++) m = fmaxf(m, fabsf(v[i]));                                                          \
  for (int j = 0; j < 8; j++) m = fmaxf(m, lanes[j]);                                                    \
  return m;

#define PACK_BODY                                                                                         \
  if (bits == 4) { /* constant widths let the compiler vectorise */                                       \
    for (size_t w = 0; w < n / 8; w++) {                                                                  \
      uint32_t word = 0;                                                                                  \
      for (int j = 0; j < 8; j++) word |= (uint32_t)codes[w * 8 + j] << (4 * j);                          \
      words[w] = word;                                                                                    \
    }                                                                                                     \
  } else if (bits == 8) {                                                                                 \
    if ((void *)words != (void *)codes) memcpy(words, codes, n); /* little-endian: element 0 lowest */   \
  } else { /* a little-endian bit stream: a code may straddle two words (3, 5, 6 bits) */                  \
    for (size_t w = 0; w < (n * (size_t)bits + 31) / 32; w++) words[w] = 0;                              \
    for (size_t i = 0; i < n; i++) {                                                                      \
      const size_t bit = i * (size_t)bits, w = bit / 32;                                                  \
      const unsigned shift = (unsigned)(bit % 32);                                                        \
      words[w] |= (uint32_t)codes[i] << shift;                                                            \
      if (shift + (unsigned)bits > 32) words[w + 1] |= (uint32_t)codes[i] >> (32 - shift);                \
    }                                                                                                     \
  }

// min(0, v) and max(0, v) over n values in 8 lanes (compares, so they vectorise; a NaN
// is skipped like fminf/fmaxf skip it, and min/max are exact in any order).
#define MINMAX_BODY                                                                                       \
  float lo[8] = {0, 0, 0, 0, 0, 0, 0, 0}, hi[8] = {0, 0, 0, 0, 0, 0, 0, 0};                               \
  size_t i = 0;                                                                                           \
  for (; i + 8 <= n; i += 8)                                                                              \
    for (int j = 0; j < 8; j++) {                                                                         \
      float x = v[i + j];                                                                                 \
      lo[j] = x < lo[j] ? x : lo[j];                                                                      \
      hi[j] = x > hi[j] ? x : hi[j];                                                                      \
    }                                                                                                     \
  float l = 0, h = 0;                                                                                     \
  for (; i < n; i++) {                                                                                    \
    l = v[i] < l ? v[i] : l;                                                                              \
    h = v[i] > h ? v[i] : h;                                                                              \
  }                                                                                                       \
  for (int j = 0; j < 8; j++) {                                                                           \
    l = lo[j] < l ? lo[j] : l;                                                                            \
    h = hi[j] > h ? hi[j] : h;                                                                            \
  }                                                                                                       \
  *low = l;                                                                                               \
  *high = h;

// One function per (target, dtype): the dtype is a constant inside, so the rounding
// branches disappear and the loops vectorise.
#define DEFINE_QUANTIZE(name, attributes, DTYPE)                                                          \
  attributes static float name##_absmax(const float *v, size_t n) { ABSMAX_BODY }                         \
  attributes static void name##_minmax(const float *v, size_t n, float *low, float *high) { MINMAX_BODY }  \
  attributes static void name##_pack(const uint8_t *codes, size_t n, int bits, uint32_t *words) { PACK_BODY } \
  attributes static void name(const float *x, size_t groups, size_t group, int bits, int symmetric,       \
                              float epsilon, uint8_t *codes, uint32_t *words, float *scales,              \
                              float *zero_points, float *recon) {                                         \
    const int dtype = DTYPE;                                                                              \
    float (*absmax)(const float *, size_t) = name##_absmax;                                              \
    void (*minmax)(const float *, size_t, float *, float *) = name##_minmax;                             \
    QUANTIZE_BODY                                                                                         \
    name##_pack(codes, groups * group, bits, words);                                                      \
  }

DEFINE_QUANTIZE(quantize_portable_f32, , 0)
DEFINE_QUANTIZE(quantize_portable_bf16, , 1)
DEFINE_QUANTIZE(quantize_portable_f16, , 2)
#if defined(__x86_64__) || defined(__i386__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))
DEFINE_QUANTIZE(quantize_avx2_f32, AVX2, 0)
DEFINE_QUANTIZE(quantize_avx2_bf16, AVX2, 1)
DEFINE_QUANTIZE(quantize_avx2_f16, AVX2, 2)
#endif

void sck_quantize_int_groups(const float *x, size_t groups, size_t group, int bits, int symmetric, int dtype,
                             float epsilon, uint8_t *codes, uint32_t *words, float *scales, float *zero_points,
                             float *recon) {
  typedef void (*kernel)(const float *, size_t, size_t, int, int, float, uint8_t *, uint32_t *, float *, float *,
                         float *);
  kernel portable[3] = {quantize_portable_f32, quantize_portable_bf16, quantize_portable_f16};
  kernel chosen = portable[dtype];
#if defined(__x86_64__) || defined(__i386__)
  kernel simd[3] = {quantize_avx2_f32, quantize_avx2_bf16, quantize_avx2_f16};
  if (sck_simd_level()) chosen = simd[dtype];
#endif
  chosen(x, groups, group, bits, symmetric, epsilon, codes, words, scales, zero_points, recon);
}

// ---- FP8 (E4M3) and FP4 (E2M1) ----

static inline uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static inline float float_of(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

// E4M3 code and value of x (|x| <= 448), ties to even, without branches or tables so the
// loops vectorise.
static inline uint8_t e4m3_round(float x, float *value) {
  uint32_t u = bits_of(x), a = u & 0x7FFFFFFFu;
  // Normal range: round the Float32 mantissa to 3 bits, ties to even.
  uint32_t rounded = (a + 0x7FFFFu + ((a >> 20) & 1u)) & 0xFFF00000u;
  uint32_t normal_code = (rounded >> 20) - (120u << 3);
  // Subnormal range (|x| < 2^-6): multiples of 2^-9.
  float steps = __builtin_roundevenf(float_of(a) * 512.0f);
  int small = a < 0x3C800000u;
  uint32_t code = small ? (uint32_t)(int)steps : normal_code;
  float magnitude = small ? steps * 0x1p-9f : float_of(rounded);
  *value = float_of(bits_of(magnitude) | (u & 0x80000000u));
  return (uint8_t)(code | ((u >> 24) & 0x80u));
}

// E2M1 code of x (clamped to +-6), ties to even, and its value; a negative value keeps
// its sign at 0. Comparisons and selects only, so the loops vectorise.
static inline uint8_t e2m1_round(float x, float *value) {
  float a = fabsf(x);
  int c1 = a > 0.25f, c2 = a >= 0.75f, c3 = a > 1.25f, c4 = a >= 1.75f, c5 = a > 2.5f, c6 = a >= 3.5f, c7 = a > 5.0f;
  float magnitude = 0.5f * (float)(c1 + c2 + c3 + c4) + (float)(c5 + c6) + 2.0f * (float)c7;
  uint32_t sign = bits_of(x) & 0x80000000u;
  *value = float_of(bits_of(magnitude) | sign);
  return (uint8_t)((sign >> 28) | (uint32_t)(c1 + c2 + c3 + c4 + c5 + c6 + c7));
}

// The E8M0 exponent of an MXFP4 group with absolute maximum `amax`, as the reference
// computes it: amax's mantissa rounded to a power of two (up from 1.75, which is the
// same test whatever the weight's dtype) and 2 taken off for E2M1's largest exponent.
static inline uint8_t mx_exponent(float amax) {
  uint32_t u = bits_of(amax);
  if (!(amax > 0) || (u & 0x7F800000u) == 0x7F800000u) return 0;
  int e = (int)(u >> 23) - 127 + ((u & 0x7FFFFFu) >= 0x600000u ? 1 : 0) + 127 - 2;
  return (uint8_t)(e < 0 ? 0 : e > 254 ? 254 : e);
}

// max |v[i]| of a group (exact, so any order gives the same result).
static inline float group_absmax(const float *v, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) {
    float a = fabsf(v[i]);
    m = a > m ? a : m;
  }
  return m;
}

#define MX_DIVIDE(value) ROUND(dtype, (value) / scale)
#define NV_DIVIDE(value) ((value) / effective)

#define FP8_BODY                                                                                          \
  for (size_t start = 0; start < n; start += segment) {                                                   \
    const float s = scales[start / segment];                                                              \
    const size_t end = start + segment < n ? start + segment : n;                                         \
    for (size_t i = start; i < end; i++) {                                                                \
      float value;                                                                                        \
      codes[i] = e4m3_round(fminf(fmaxf(ROUND(dtype, x[i] / s), -448.0f), 448.0f), &value);               \
      recon[i] = ROUND(dtype, value * s);                                                                 \
    }                                                                                                     \
  }

// 16 or 32 codes of one group, then packed two per byte (even element low).
#define FP4_GROUP(size, v, divisor, scale, packed_out, recon_out)                                         \
  {                                                                                                       \
    uint8_t c[size];                                                                                      \
    for (size_t i = 0; i < size; i++) {                                                                   \
      float value;                                                                                        \
      c[i] = e2m1_round(fminf(fmaxf(divisor(v[i]), -6.0f), 6.0f), &value);                                \
      recon_out[i] = value * scale;                                                                       \
    }                                                                                                     \
    for (size_t i = 0; i < size / 2; i++) packed_out[i] = (uint8_t)(c[2 * i] | (c[2 * i + 1] << 4));      \
  }

#define MXFP4_BODY                                                                                        \
  for (size_t g = 0; g < groups; g++) {                                                                   \
    const float *v = x + g * 32;                                                                          \
    float amax = group_absmax(v, 32);                                                                     \
    uint8_t e = mx_exponent(amax);                                                                        \
    exponents[g] = e;                                                                                     \
    const float scale = e > 0 ? float_of((uint32_t)e << 23) : 0x1p-127f; /* 2^(e - 127) */                \
    FP4_GROUP(32, v, MX_DIVIDE, scale, (packed + g * 16), (recon + g * 32))                               \
  }

#define NVFP4_BODY                                                                                        \
  for (size_t g = 0; g < groups; g++) {                                                                   \
    const float *v = x + g * 16;                                                                          \
    float amax = group_absmax(v, 16);                                                                     \
    float scale_value;                                                                                    \
    uint8_t sc = e4m3_round(fminf(fmaxf(global * ROUND(dtype, amax / 6.0f), -448.0f), 448.0f), &scale_value); \
    if (scale_value == 0) sc = e4m3_round(0.125f, &scale_value); /* the reference's E4M3 epsilon */       \
    scale_codes[g] = sc;                                                                                  \
    const float effective = scale_value / global;                                                         \
    FP4_GROUP(16, v, NV_DIVIDE, effective, (packed + g * 8), (recon + g * 16))                            \
  }

// One function per (target, dtype), as for the integer kernel.
#define DEFINE_FP(name, attributes, DTYPE)                                                                \
  attributes static void name##_fp8(const float *x, size_t n, const float *scales, size_t segment,        \
                                    uint8_t *codes, float *recon) {                                       \
    const int dtype = DTYPE;                                                                              \
    FP8_BODY                                                                                              \
  }                                                                                                       \
  attributes static void name##_mxfp4(const float *x, size_t groups, uint8_t *exponents,                  \
                                      uint8_t *packed, float *recon) {                                    \
    const int dtype = DTYPE;                                                                              \
    MXFP4_BODY                                                                                            \
  }                                                                                                       \
  attributes static void name##_nvfp4(const float *x, size_t groups, float global, uint8_t *scale_codes,  \
                                      uint8_t *packed, float *recon) {                                    \
    const int dtype = DTYPE;                                                                              \
    NVFP4_BODY                                                                                            \
  }

DEFINE_FP(portable_f32, , 0)
DEFINE_FP(portable_bf16, , 1)
DEFINE_FP(portable_f16, , 2)
#if defined(__x86_64__) || defined(__i386__)
DEFINE_FP(avx2_f32, AVX2, 0)
DEFINE_FP(avx2_bf16, AVX2, 1)
DEFINE_FP(avx2_f16, AVX2, 2)
#define CHOOSE(kind, dtype)                                                                               \
  (sck_simd_level() ? (dtype == 1 ? avx2_bf16_##kind : dtype == 2 ? avx2_f16_##kind : avx2_f32_##kind)     \
                    : (dtype == 1 ? portable_bf16_##kind : dtype == 2 ? portable_f16_##kind : portable_f32_##kind))
#else
#define CHOOSE(kind, dtype) (dtype == 1 ? portable_bf16_##kind : dtype == 2 ? portable_f16_##kind : portable_f32_##kind)
#endif

void sck_quantize_fp8(const float *x, size_t n, const float *scales, size_t segment, int dtype, uint8_t *codes,
                      float *recon) {
  CHOOSE(fp8, dtype)(x, n, scales, segment, codes, recon);
}

void sck_quantize_mxfp4(const float *x, size_t groups, int dtype, uint8_t *exponents, uint8_t *packed,
                        float *recon) {
  CHOOSE(mxfp4, dtype)(x, groups, exponents, packed, recon);
}

uint8_t sck_mx_exponent(float amax) { return mx_exponent(amax); }

void sck_quantize_nvfp4(const float *x, size_t groups, float global, int dtype, uint8_t *scale_codes,
                        uint8_t *packed, float *recon) {
  CHOOSE(nvfp4, dtype)(x, groups, global, scale_codes, packed, recon);
}
