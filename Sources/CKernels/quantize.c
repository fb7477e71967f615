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
      float amax = 0;                                                                                     \
      for (size_t i = 0; i < group; i++) amax = fmaxf(amax, fabsf(v[i]));                               \
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

static void quantize_portable(const float *x, size_t groups, size_t group, int bits, int symmetric, int dtype,
                              float epsilon, uint8_t *codes, float *scales, float *zero_points, float *recon) {
  QUANTIZE_BODY
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma,f16c"))) static void quantize_avx2(const float *x, size_t groups, size_t group,
                                                                  int bits, int symmetric, int dtype, float epsilon,
                                                                  uint8_t *codes, float *scales,
                                                                  float *zero_points, float *recon) {
  QUANTIZE_BODY
}
#endif

void sck_quantize_int_groups(const float *x, size_t groups, size_t group, int bits, int symmetric, int dtype,
                             float epsilon, uint8_t *codes, float *scales, float *zero_points, float *recon) {
#if defined(__x86_64__) || defined(__i386__)
  if (sck_simd_level()) {
    quantize_avx2(x, groups, group, bits, symmetric, dtype, epsilon, codes, scales, zero_points, recon);
    return;
  }
#endif
  quantize_portable(x, groups, group, bits, symmetric, dtype, epsilon, codes, scales, zero_points, recon);
}

void sck_pack_codes(const uint8_t *codes, size_t n, int bits, uint32_t *words) {
  const size_t per = 32 / (size_t)bits;
  for (size_t w = 0; w < n / per; w++) {
    uint32_t word = 0;
    for (size_t j = 0; j < per; j++) word |= (uint32_t)codes[w * per + j] << (bits * j);
    words[w] = word;
  }
}
