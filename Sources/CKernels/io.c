// In-kernel file copy for tensors written unchanged: the data never passes through
// this process's memory, so it neither faults pages in nor adds to the RSS.
#define _GNU_SOURCE
#include "CKernels.h"

#include <errno.h>
#include <unistd.h>

long long sck_copy_file_range(int fd_in, long long offset_in, int fd_out, size_t length) {
#if defined(__linux__)
  off64_t in = (off64_t)offset_in;
  ssize_t n = copy_file_range(fd_in, &in, fd_out, NULL, length, 0);
  return n < 0 ? -(long long)errno : (long long)n;
#else
  (void)fd_in;
  (void)offset_in;
  (void)fd_out;
  (void)length;
  return -ENOSYS;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void sck_keep_large_allocations(void) {
#if defined(__GLIBC__)
  // glibc serves allocations above a (dynamic, at most 32 MiB) threshold with a fresh
  // mmap and unmaps them on free, so every tensor-sized buffer is page-faulted and zeroed
  // by the kernel again. Serving them from the heap and keeping freed memory lets the
  // next tensor reuse pages that are already mapped; peak memory is unchanged.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

#include <zlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SCK_HAVE_CLMUL_CRC 1

/* CRC-32 (zlib's, bit-reflected) of `length` bytes (a multiple of 16, at least 64) by
 * carry-less multiplication: four 128-bit lanes folded by 512 bits, then folded to one,
 * reduced to 64 bits and Barrett-reduced to 32 (Gopal et al., "Fast CRC Computation for
 * Generic Polynomials Using PCLMULQDQ Instruction", Intel 2009). `crc` is the running
 * value in its inverted form. The tests compare it with zlib on every length and
 * alignment. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul(const unsigned char *buf, size_t length,
                                                                     uint32_t crc) {
  static const uint64_t k1k2[2] __attribute__((aligned(16))) = {0x0154442bd4ULL, 0x01c6e41596ULL};
  static const uint64_t k3k4[2] __attribute__((aligned(16))) = {0x01751997d0ULL, 0x00ccaa009eULL};
  static const uint64_t k5k0[2] __attribute__((aligned(16))) = {0x0163cd6124ULL, 0};
  static const uint64_t poly[2] __attribute__((aligned(16))) = {0x01db710641ULL, 0x01f7011641ULL};
  __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;
  x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
  x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
  x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
  x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
  x0 = _mm_load_si128((const __m128i *)k1k2);
  buf += 64;
  length -= 64;
  while (length >= 64) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
    x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
    x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
    x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(buf + 0x00)));
    x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(buf + 0x10)));
    x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(buf + 0x20)));
    x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(buf + 0x30)));
    buf += 64;
    length -= 64;
  }
  x0 = _mm_load_si128((const __m128i *)k3k4);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x3), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x4), x5);
  while (length >= 16) {
    x2 = _mm_loadu_si128((const __m128i *)buf);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
    buf += 16;
    length -= 16;
  }
  /* 128 -> 64 bits. */
  x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
  x3 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  x0 = _mm_loadl_epi64((const __m128i *)k5k0);
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_and_si128(x1, x3);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x00), x2);
  /* Barrett reduction to 32 bits. */
  x0 = _mm_load_si128((const __m128i *)poly);
  x2 = _mm_and_si128(x1, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
  x2 = _mm_and_si128(x2, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

uint32_t sck_crc32_zlib(uint32_t crc, const void *data, size_t length) {
  const unsigned char *p = (const unsigned char *)data;
  uLong value = crc;
  while (length > 0) {
    size_t n = length > (1u << 30) ? (1u << 30) : length;
    value = crc32(value, p, (uInt)n);
    p += n;
    length -= n;
  }
  return (uint32_t)value;
}

uint32_t sck_crc32(uint32_t crc, const void *data, size_t length) {
  const unsigned char *p = (const unsigned char *)data;
#ifdef SCK_HAVE_CLMUL_CRC
  if (length >= 64 && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) {
    size_t chunk = length & ~(size_t)15;
    crc = ~crc32_clmul(p, chunk, ~crc);
    p += chunk;
    length -= chunk;
  }
#endif
  return sck_crc32_zlib(crc, p, length);
}

uint32_t sck_crc32_combine(uint32_t first, uint32_t second, uint64_t second_length) {
  return (uint32_t)crc32_combine64(first, second, (z_off64_t)second_length);
}
