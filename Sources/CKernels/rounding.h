// Rounding each arithmetic result to the weight's dtype, as PyTorch computes BF16 and F16
// operations: shared by the quantizers (quantize.c), the one-pass row kernels (fused.c) and
// the MSE search (search.c), so all of them round alike.
#ifndef SCK_ROUNDING_H
#define SCK_ROUNDING_H

#include <stdint.h>
#include <string.h>

// BFloat16 round to nearest even on the bit pattern: the same integer operations for every
// input, NaN included (whose payload they do not keep), in every kernel and on both paths.
static inline float sck_bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  memcpy(&x, &u, 4);
  return x;
}

// `v` rounded to dtype 0 (Float32: unchanged), 1 (BFloat16) or 2 (Float16).
#define SCK_ROUND(dtype, v) ((dtype) == 1 ? sck_bf16_round(v) : (dtype) == 2 ? (float)(_Float16)(v) : (v))

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// sck_bf16_round on 8 lanes: the same integer operations.
__attribute__((target("avx2,fma,f16c"))) static inline __m256 sck_bf16_round8(__m256 x) {
  __m256i u = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
  return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xFFFF0000u)));
}
#endif

#endif
