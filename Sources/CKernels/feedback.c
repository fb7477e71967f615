// The in-block step of GPTQ / SparseGPT error feedback (Sources/SwiftCompressKit/Calibration/
// ErrorFeedback.swift): after column c is rounded or masked, its scaled error e is taken out of
// the block's later columns, column k -= e * factor_k. Each product is rounded before the
// subtraction (no fused multiply-add), as the reference (torch's outer product, then a
// subtraction) and the portable path compute it, so both paths give the same bits.
#include "CKernels.h"

#pragma clang fp contract(off)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FEEDBACK_X86 1
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define FEEDBACK_X86 0
#endif

static void rank1_portable(float *columns, size_t stride, size_t count, const float *err, const float *factors,
                           size_t rows) {
  for (size_t k = 0; k < count; k++) {
    const float f = factors[k];
    if (f == 0) continue;
    float *t = columns + k * stride;
    for (size_t r = 0; r < rows; r++) t[r] = t[r] - err[r] * f;
  }
}

#if FEEDBACK_X86
AVX2 static void rank1_avx2(float *columns, size_t stride, size_t count, const float *err, const float *factors,
                            size_t rows) {
  for (size_t k = 0; k < count; k++) {
    const float f = factors[k];
    if (f == 0) continue;
    float *t = columns + k * stride;
    const __m256 vf = _mm256_set1_ps(f);
    size_t r = 0;
    for (; r + 8 <= rows; r += 8) {
      const __m256 product = _mm256_mul_ps(_mm256_loadu_ps(err + r), vf);
      _mm256_storeu_ps(t + r, _mm256_sub_ps(_mm256_loadu_ps(t + r), product));
    }
    for (; r < rows; r++) t[r] = t[r] - err[r] * f;
  }
}
#endif

void sck_feedback_rank1(float *columns, size_t stride, size_t count, const float *err, const float *factors,
                        size_t rows) {
#if FEEDBACK_X86
  if (sck_simd_level()) {
    rank1_avx2(columns, stride, count, err, factors, rows);
    return;
  }
#endif
  rank1_portable(columns, stride, count, err, factors, rows);
}
