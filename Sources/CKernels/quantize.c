// Integer group quantization, bit for bit as compressed-tensors computes it.
//
// The loop body is plain scalar C compiled twice: once for baseline x86-64 (or any CPU)
// and once with AVX2/FMA/F16C enabled, which the compiler vectorises. IEEE division,
// round-half-even and the dtype roundings are exact operations, so both builds give the
// same bits; no FMA contraction is allowed.
#include "CKernels.h"

#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

static inline float bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  memcpy(&x, &u, 4);
  return x;
}

// Each arithmetic result rounded to the weight's dtype, as PyTorch computes BF16/F16 ops.
#define ROUND(dtype, v) ((dtype) == 1 ? bf16_round(v) : (dtype) == 2 ? (float)(_Float16)(v) : (v))

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
      float low = 0, high = 0;                                                                            \
      for (size_t i = 0; i < group; i++) {                                                               \
        low = fminf(low, v[i]);                                                                           \
        high = fmaxf(high, v[i]);                                                                         \
      }                                                                                                   \
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

// One function per (target, dtype): the dtype is a constant inside, so the rounding
// branches disappear and the loops vectorise.
#define DEFINE_QUANTIZE(name, attributes, DTYPE)                                                          \
  attributes static float name##_absmax(const float *v, size_t n) { ABSMAX_BODY }                         \
  attributes static void name(const float *x, size_t groups, size_t group, int bits, int symmetric,       \
                              float epsilon, uint8_t *codes, float *scales, float *zero_points,           \
                              float *recon) {                                                             \
    const int dtype = DTYPE;                                                                              \
    float (*absmax)(const float *, size_t) = name##_absmax;                                              \
    QUANTIZE_BODY                                                                                         \
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
                             float epsilon, uint8_t *codes, float *scales, float *zero_points, float *recon) {
  typedef void (*kernel)(const float *, size_t, size_t, int, int, float, uint8_t *, float *, float *, float *);
  kernel portable[3] = {quantize_portable_f32, quantize_portable_bf16, quantize_portable_f16};
  kernel chosen = portable[dtype];
#if defined(__x86_64__) || defined(__i386__)
  kernel simd[3] = {quantize_avx2_f32, quantize_avx2_bf16, quantize_avx2_f16};
  if (sck_simd_level()) chosen = simd[dtype];
#endif
  chosen(x, groups, group, bits, symmetric, epsilon, codes, scales, zero_points, recon);
}

void sck_pack_codes(const uint8_t *codes, size_t n, int bits, uint32_t *words) {
  if (bits == 4) {  // constant widths let the compiler vectorise
    for (size_t w = 0; w < n / 8; w++) {
      uint32_t word = 0;
      for (int j = 0; j < 8; j++) word |= (uint32_t)codes[w * 8 + j] << (4 * j);
      words[w] = word;
    }
  } else if (bits == 8) {
    memcpy(words, codes, n);  // four bytes per little-endian word, element 0 lowest
  } else {
    const size_t per = 32 / (size_t)bits;
    for (size_t w = 0; w < n / per; w++) {
      uint32_t word = 0;
      for (size_t j = 0; j < per; j++) word |= (uint32_t)codes[w * per + j] << (bits * j);
      words[w] = word;
    }
  }
}

// ---- FP8 (E4M3) and FP4 (E2M1) ----

static const float e2m1_values[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

// E4M3 ("fn") code nearest to x, ties to even, saturating at 448 (x is finite).
static inline uint8_t e4m3_code(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint8_t sign = (uint8_t)((u >> 24) & 0x80);
  float a = fminf(fabsf(x), 448.0f);
  if (a < 0x1p-6f) return sign | (uint8_t)__builtin_roundevenf(a * 512.0f);
  memcpy(&u, &a, 4);
  int exponent = (int)(u >> 23) - 127 + 7;
  uint32_t mantissa = (u >> 20) & 7, rest = u & 0xFFFFF;
  if (rest > 0x80000 || (rest == 0x80000 && (mantissa & 1))) {
    mantissa++;
    if (mantissa == 8) {
      mantissa = 0;
      exponent++;
    }
  }
  int code = exponent << 3 | (int)mantissa;
  return sign | (uint8_t)(code > 0x7E ? 0x7E : code);
}

// E4M3 values of the finite codes (0x7F and 0xFF, NaN, are never produced here).
static float e4m3_table[256];
static int e4m3_ready = 0;

static void e4m3_init(void) {
  if (__atomic_load_n(&e4m3_ready, __ATOMIC_ACQUIRE)) return;
  for (int code = 0; code < 256; code++) {
    int e = (code >> 3) & 0xF, m = code & 7;
    float v = e == 0 ? (float)m * 0x1p-9f : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    e4m3_table[code] = (code & 0x80) ? -v : v;
  }
  __atomic_store_n(&e4m3_ready, 1, __ATOMIC_RELEASE);  // benign race: every writer stores the same values
}

static inline float e4m3_value(uint8_t code) { return e4m3_table[code]; }

// E2M1 code of x (clamped to +-6), ties to even; a negative value keeps its sign at 0.
static inline uint8_t e2m1_code(float x) {
  float a = fabsf(x);
  uint8_t m = (uint8_t)((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f));
  return (uint8_t)(signbit(x) ? 8 : 0) | m;
}

#define FP8_BODY                                                                                          \
  for (size_t start = 0; start < n; start += segment) {                                                   \
    const float s = scales[start / segment];                                                              \
    const size_t end = start + segment < n ? start + segment : n;                                         \
    for (size_t i = start; i < end; i++) {                                                                \
      float v = ROUND(dtype, x[i] / s);                                                                   \
      uint8_t c = e4m3_code(fminf(fmaxf(v, -448.0f), 448.0f));                                            \
      codes[i] = c;                                                                                       \
      recon[i] = ROUND(dtype, e4m3_value(c) * s);                                                         \
    }                                                                                                     \
  }

#define MXFP4_BODY                                                                                        \
  for (size_t g = 0; g < groups; g++) {                                                                   \
    const float *v = x + g * 32;                                                                          \
    int e = exponents[g] - 127;                                                                           \
    float scale = ldexpf(1.0f, e);                                                                        \
    for (size_t i = 0; i < 32; i += 2) {                                                                  \
      uint8_t lo = e2m1_code(fminf(fmaxf(ROUND(dtype, v[i] / scale), -6.0f), 6.0f));                      \
      uint8_t hi = e2m1_code(fminf(fmaxf(ROUND(dtype, v[i + 1] / scale), -6.0f), 6.0f));                  \
      packed[(g * 32 + i) / 2] = (uint8_t)(lo | (hi << 4));                                               \
      recon[g * 32 + i] = e2m1_values[lo] * scale;                                                        \
      recon[g * 32 + i + 1] = e2m1_values[hi] * scale;                                                    \
    }                                                                                                     \
  }

#define NVFP4_BODY                                                                                        \
  for (size_t g = 0; g < groups; g++) {                                                                   \
    const float *v = x + g * 16;                                                                          \
    float amax = 0;                                                                                       \
    for (size_t i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));                                    \
    uint8_t sc = e4m3_code(fminf(fmaxf(global * ROUND(dtype, amax / 6.0f), -448.0f), 448.0f));            \
    if (e4m3_value(sc) == 0) sc = e4m3_code(0.125f);                                                      \
    scale_codes[g] = sc;                                                                                  \
    float effective = e4m3_value(sc) / global;                                                            \
    for (size_t i = 0; i < 16; i += 2) {                                                                  \
      uint8_t lo = e2m1_code(fminf(fmaxf(v[i] / effective, -6.0f), 6.0f));                                \
      uint8_t hi = e2m1_code(fminf(fmaxf(v[i + 1] / effective, -6.0f), 6.0f));                            \
      packed[(g * 16 + i) / 2] = (uint8_t)(lo | (hi << 4));                                               \
      recon[g * 16 + i] = e2m1_values[lo] * effective;                                                    \
      recon[g * 16 + i + 1] = e2m1_values[hi] * effective;                                                \
    }                                                                                                     \
  }

// One function per (target, dtype), as for the integer kernel.
#define DEFINE_FP(name, attributes, DTYPE)                                                                \
  attributes static void name##_fp8(const float *x, size_t n, const float *scales, size_t segment,        \
                                    uint8_t *codes, float *recon) {                                       \
    const int dtype = DTYPE;                                                                              \
    FP8_BODY                                                                                              \
  }                                                                                                       \
  attributes static void name##_mxfp4(const float *x, size_t groups, const uint8_t *exponents,            \
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
  e4m3_init();
  CHOOSE(fp8, dtype)(x, n, scales, segment, codes, recon);
}

void sck_quantize_mxfp4(const float *x, size_t groups, const uint8_t *exponents, int dtype, uint8_t *packed,
                        float *recon) {
  CHOOSE(mxfp4, dtype)(x, groups, exponents, packed, recon);
}

void sck_quantize_nvfp4(const float *x, size_t groups, float global, int dtype, uint8_t *scale_codes,
                        uint8_t *packed, float *recon) {
  e4m3_init();
  CHOOSE(nvfp4, dtype)(x, groups, global, scale_codes, packed, recon);
}
