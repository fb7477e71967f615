// Pruning kernels: score histograms for exact selection, threshold and N:M masks, and
// applying a mask to stored weights.
//
// Scores are non-negative finite floats, which order like their bit patterns, so every
// selection here is exact integer work: the portable and AVX2 builds agree bit for bit.
// Among equal scores the element with the lower index is pruned first (the order of a
// stable ascending sort), everywhere.
#include "CKernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define PRUNE_X86 1
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define PRUNE_X86 0
#endif

static inline uint32_t score_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

void sck_score_histogram(const float *scores, size_t n, int32_t prefix, uint64_t *bins) {
  if (prefix < 0) {
    for (size_t i = 0; i < n; i++) bins[score_bits(scores[i]) >> 16]++;
  } else {
    for (size_t i = 0; i < n; i++) {
      uint32_t u = score_bits(scores[i]);
      if ((u >> 16) == (uint32_t)prefix) bins[u & 0xFFFFu]++;
    }
  }
}

#define THRESHOLD_BODY                                                                                    \
  const uint32_t t = score_bits(threshold);                                                               \
  uint64_t ties = *ties_to_prune;                                                                         \
  size_t kept = 0;                                                                                        \
  if (ties == 0) { /* no tie to prune: a plain comparison, vectorised */                                  \
    for (size_t i = 0; i < n; i++) {                                                                      \
      uint8_t k = score_bits(scores[i]) >= t;                                                             \
      keep[i] = k;                                                                                        \
      kept += k;                                                                                          \
    }                                                                                                     \
    return kept;                                                                                          \
  }                                                                                                       \
  for (size_t i = 0; i < n; i++) {                                                                        \
    uint32_t u = score_bits(scores[i]);                                                                   \
    uint8_t k = u > t;                                                                                    \
    if (u == t) {                                                                                         \
      if (ties > 0) ties--;                                                                               \
      else k = 1;                                                                                         \
    }                                                                                                     \
    keep[i] = k;                                                                                          \
    kept += k;                                                                                            \
  }                                                                                                       \
  *ties_to_prune = ties;                                                                                  \
  return kept;

static size_t threshold_portable(const float *scores, size_t n, float threshold, uint64_t *ties_to_prune,
                                 uint8_t *keep) {
  THRESHOLD_BODY
}
#if PRUNE_X86
AVX2 static size_t threshold_avx2(const float *scores, size_t n, float threshold, uint64_t *ties_to_prune,
                                  uint8_t *keep) {
  THRESHOLD_BODY
}
#endif

size_t sck_threshold_mask(const float *scores, size_t n, float threshold, uint64_t *ties_to_prune, uint8_t *keep) {
#if PRUNE_X86
  if (sck_simd_level()) return threshold_avx2(scores, n, threshold, ties_to_prune, keep);
#endif
  return threshold_portable(scores, n, threshold, ties_to_prune, keep);
}

// Element j of a group is kept when fewer than `keep_n` elements of the group rank
// above it: a larger score, or an equal score at a higher index.
#define NM_BODY                                                                                           \
  for (size_t g = 0; g + (size_t)m <= count; g += (size_t)m) {                                            \
    const float *s = scores + g;                                                                          \
    for (int j = 0; j < m; j++) {                                                                         \
      uint32_t sj = score_bits(s[j]);                                                                     \
      int above = 0;                                                                                      \
      for (int i = 0; i < m; i++) {                                                                       \
        uint32_t si = score_bits(s[i]);                                                                   \
        above += (si > sj) | ((si == sj) & (i > j));                                                      \
      }                                                                                                   \
      keep[g + (size_t)j] = above < keep_n;                                                               \
    }                                                                                                     \
  }

static void nm_portable(const float *scores, size_t count, int keep_n, int m, uint8_t *keep) { NM_BODY }
#if PRUNE_X86
AVX2 static void nm_avx2(const float *scores, size_t count, int keep_n, int m, uint8_t *keep) { NM_BODY }
// 2:4 and 4:8 written out with constant group sizes so the loops unroll.
AVX2 static void nm_avx2_m4(const float *scores, size_t count, int keep_n, uint8_t *keep) {
  const int m = 4;
  NM_BODY
}
AVX2 static void nm_avx2_m8(const float *scores, size_t count, int keep_n, uint8_t *keep) {
  const int m = 8;
  NM_BODY
}
#endif

void sck_nm_mask(const float *scores, size_t count, int keep_n, int m, uint8_t *keep) {
#if PRUNE_X86
  if (sck_simd_level()) {
    if (m == 4) nm_avx2_m4(scores, count, keep_n, keep);
    else if (m == 8) nm_avx2_m8(scores, count, keep_n, keep);
    else nm_avx2(scores, count, keep_n, m, keep);
    return;
  }
#endif
  nm_portable(scores, count, keep_n, m, keep);
}

// The k-th smallest (0-based) of a[0..n), reordering a: quickselect with median-of-three
// pivots and a three-way partition (deterministic).
static uint32_t quickselect(uint32_t *a, size_t n, size_t k) {
  size_t lo = 0, hi = n - 1;
  while (hi > lo) {
    size_t mid = lo + (hi - lo) / 2;
    uint32_t x = a[lo], y = a[mid], z = a[hi];
    uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    // [lo, lt) < pivot, [lt, gt] == pivot, (gt, hi] > pivot.
    size_t lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      if (a[i] < pivot) {
        uint32_t t = a[lt];
        a[lt++] = a[i];
        a[i++] = t;
      } else if (a[i] > pivot) {
        uint32_t t = a[gt];
        a[gt] = a[i];
        a[i] = t;
        if (gt == 0) break;
        gt--;
      } else {
        i++;
      }
    }
    if (k < lt) hi = lt - 1;
    else if (k > gt) lo = gt + 1;
    else return pivot;
  }
  return a[k];
}

// The k-th smallest (0-based) of n non-negative scores. A histogram of the top 11 bits
// of the (31-bit) patterns finds the bin holding it; only that bin's scores are copied
// to `work` and selected among.
float sck_select_kth(const float *scores, size_t n, size_t k, float *work) {
  uint32_t bins[2048];
  memset(bins, 0, sizeof bins);
  for (size_t i = 0; i < n; i++) bins[(score_bits(scores[i]) & 0x7FFFFFFFu) >> 20]++;
  size_t bin = 0, below = 0;
  while (below + bins[bin] <= k) below += bins[bin++];
  uint32_t *candidates = (uint32_t *)work;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u = score_bits(scores[i]) & 0x7FFFFFFFu;
    if ((u >> 20) == bin) candidates[m++] = u;
  }
  uint32_t u = quickselect(candidates, m, k - below);
  float result;
  memcpy(&result, &u, 4);
  return result;
}

#define APPLY_MASK_BODY                                                                                   \
  if (element_size == 4) {                                                                                \
    const uint32_t *s = (const uint32_t *)src;                                                            \
    uint32_t *d = (uint32_t *)dst;                                                                        \
    for (size_t i = 0; i < n; i++) d[i] = s[i] & (0u - (uint32_t)(keep[i] != 0));                        \
  } else if (element_size == 2) {                                                                         \
    const uint16_t *s = (const uint16_t *)src;                                                            \
    uint16_t *d = (uint16_t *)dst;                                                                        \
    for (size_t i = 0; i < n; i++) d[i] = (uint16_t)(s[i] & (0u - (uint32_t)(keep[i] != 0)));             \
  } else {                                                                                                \
    const uint8_t *s = (const uint8_t *)src;                                                              \
    uint8_t *d = (uint8_t *)dst;                                                                          \
    for (size_t i = 0; i < n * element_size; i++) d[i] = keep[i / element_size] ? s[i] : 0;               \
  }

static void apply_mask_portable(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst) {
  APPLY_MASK_BODY
}
#if PRUNE_X86
AVX2 static void apply_mask_avx2(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst) {
  APPLY_MASK_BODY
}
#endif

void sck_apply_mask(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst) {
#if PRUNE_X86
  if (sck_simd_level()) {
    apply_mask_avx2(src, n, element_size, keep, dst);
    return;
  }
#endif
  apply_mask_portable(src, n, element_size, keep, dst);
}

size_t sck_gather_kept(const void *src, size_t n, size_t element_size, const uint8_t *keep, void *dst,
                       uint8_t *bitmask) {
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  size_t kept = 0;
  memset(bitmask, 0, (n + 7) / 8);
  for (size_t i = 0; i < n; i++) {
    if (keep[i]) {
      memcpy(d + kept * element_size, s + i * element_size, element_size);
      kept++;
      bitmask[i / 8] |= (uint8_t)(1u << (i % 8));
    }
  }
  return kept;
}

size_t sck_scatter_kept(const void *src, size_t n, size_t element_size, const uint8_t *bitmask, void *dst) {
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    if (bitmask[i / 8] >> (i % 8) & 1u) {
      memcpy(d + i * element_size, s + used * element_size, element_size);
      used++;
    } else {
      memset(d + i * element_size, 0, element_size);
    }
  }
  return used;
}

// ---- applying a mask to one row ----

#define MASK_ROW_BODY                                                                                     \
  size_t kept = 0, zeros = 0;                                                                             \
  for (size_t i = 0; i < n; i++) {                                                                        \
    float v = keep[i] ? values[i] : 0.0f;                                                                 \
    recon[i] = v;                                                                                         \
    kept += keep[i] != 0;                                                                                 \
    zeros += v == 0.0f;                                                                                   \
  }                                                                                                       \
  *zeros_out = zeros;                                                                                     \
  return kept;

static size_t mask_row_portable(const float *values, const uint8_t *keep, size_t n, float *recon,
                                size_t *zeros_out) {
  MASK_ROW_BODY
}
#if PRUNE_X86
AVX2 static size_t mask_row_avx2(const float *values, const uint8_t *keep, size_t n, float *recon,
                                 size_t *zeros_out) {
  MASK_ROW_BODY
}
#endif

size_t sck_mask_row(const float *values, const uint8_t *keep, size_t n, float *recon, size_t *zeros) {
#if PRUNE_X86
  if (sck_simd_level()) return mask_row_avx2(values, keep, n, recon, zeros);
#endif
  return mask_row_portable(values, keep, n, recon, zeros);
}

#define GROUPS_OVER_BODY                                                                                  \
  size_t over = 0;                                                                                        \
  for (size_t g = 0; g + (size_t)m <= n; g += (size_t)m) {                                                \
    int nonzero = 0;                                                                                      \
    for (int j = 0; j < m; j++) nonzero += values[g + (size_t)j] != 0.0f;                                 \
    over += nonzero > keep_n;                                                                             \
  }                                                                                                       \
  return over;

static size_t groups_over_portable(const float *values, size_t n, int keep_n, int m) { GROUPS_OVER_BODY }
#if PRUNE_X86
AVX2 static size_t groups_over_avx2(const float *values, size_t n, int keep_n, int m) { GROUPS_OVER_BODY }
#endif

size_t sck_groups_over(const float *values, size_t n, int keep_n, int m) {
#if PRUNE_X86
  if (sck_simd_level()) return groups_over_avx2(values, n, keep_n, m);
#endif
  return groups_over_portable(values, n, keep_n, m);
}

#define COUNT_BODY                                                                                        \
  const uint32_t t = score_bits(threshold);                                                               \
  uint64_t b = 0, e = 0;                                                                                  \
  for (size_t i = 0; i < n; i++) {                                                                        \
    uint32_t u = score_bits(scores[i]);                                                                   \
    b += u < t;                                                                                           \
    e += u == t;                                                                                          \
  }                                                                                                       \
  *below += b;                                                                                            \
  *equal += e;

static void count_portable(const float *scores, size_t n, float threshold, uint64_t *below, uint64_t *equal) {
  COUNT_BODY
}
#if PRUNE_X86
AVX2 static void count_avx2(const float *scores, size_t n, float threshold, uint64_t *below, uint64_t *equal) {
  COUNT_BODY
}
#endif

void sck_count_below_equal(const float *scores, size_t n, float threshold, uint64_t *below, uint64_t *equal) {
#if PRUNE_X86
  if (sck_simd_level()) {
    count_avx2(scores, n, threshold, below, equal);
    return;
  }
#endif
  count_portable(scores, n, threshold, below, equal);
}
