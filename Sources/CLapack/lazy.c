// The BLAS and LAPACKE entry points of CLapack.h, each forwarding to the library's own
// function, which is looked up on its first call. OpenBLAS and LAPACKE are loaded then,
// once (dlopen): loading them at start, with liblapack, libgfortran and their
// relocations, and starting OpenBLAS's threads took about 7 ms of CPU of every run
// (`swiftcompress --version` 11.5 -> 4.7 ms), most of which never call them.
//
// The forwarding functions are hidden: they are not in the executable's dynamic symbol
// table, so no library can bind one of its own calls to them.
#include "CLapack.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __APPLE__
#define OPENBLAS_SONAME "libopenblas.dylib"
#define LAPACKE_SONAME "liblapacke.dylib"
#else
#define OPENBLAS_SONAME "libopenblas.so.0"
#define LAPACKE_SONAME "liblapacke.so.3"
#endif

static void *openblas, *lapacke;
static pthread_once_t openblas_loaded = PTHREAD_ONCE_INIT, lapacke_loaded = PTHREAD_ONCE_INIT;

static void *open_library(const char *name) {
  void *handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
  if (!handle) {
    fprintf(stderr,
            "swiftcompress: cannot load %s, which this command needs for its matrix algebra: %s\n"
            "Install OpenBLAS and LAPACKE (Debian and Ubuntu: apt-get install libopenblas0 liblapacke).\n",
            name, dlerror());
    exit(1);
  }
  return handle;
}

static void load_openblas(void) { openblas = open_library(OPENBLAS_SONAME); }
static void load_lapacke(void) { lapacke = open_library(LAPACKE_SONAME); }

static void *missing(const char *library, const char *name) {
  fprintf(stderr, "swiftcompress: %s has no function %s: %s\n", library, name, dlerror());
  exit(1);
}

// A BLAS function from OpenBLAS; a LAPACKE function from OpenBLAS when it carries LAPACKE
// (its own builds do), else from liblapacke (Debian builds them apart).
static void *resolve(int from_lapacke, const char *name) {
  pthread_once(&openblas_loaded, load_openblas);
  void *symbol = dlsym(openblas, name);
  if (symbol) return symbol;
  if (!from_lapacke) return missing(OPENBLAS_SONAME, name);
  pthread_once(&lapacke_loaded, load_lapacke);
  symbol = dlsym(lapacke, name);
  return symbol ? symbol : missing(LAPACKE_SONAME, name);
}

// A forwarding function: `type` is the function's pointer type, looked up once.
#define TARGET(type, from_lapacke, name)                                               \
  static _Atomic(type) cached_##name;                                                  \
  type target = atomic_load_explicit(&cached_##name, memory_order_acquire);            \
  if (!target) {                                                                       \
    target = (type)resolve(from_lapacke, #name);                                       \
    atomic_store_explicit(&cached_##name, target, memory_order_release);               \
  }

#define HIDDEN __attribute__((visibility("hidden")))

typedef void (*sgemm_t)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE, const blasint,
                        const blasint, const blasint, const float, const float *, const blasint, const float *,
                        const blasint, const float, float *, const blasint);
HIDDEN void cblas_sgemm(const enum CBLAS_ORDER Order, const enum CBLAS_TRANSPOSE TransA,
                        const enum CBLAS_TRANSPOSE TransB, const blasint M, const blasint N, const blasint K,
                        const float alpha, const float *A, const blasint lda, const float *B, const blasint ldb,
                        const float beta, float *C, const blasint ldc) {
  TARGET(sgemm_t, 0, cblas_sgemm)
  target(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef void (*ssyrk_t)(const enum CBLAS_ORDER, const enum CBLAS_UPLO, const enum CBLAS_TRANSPOSE, const blasint,
                        const blasint, const float, const float *, const blasint, const float, float *,
                        const blasint);
HIDDEN void cblas_ssyrk(const enum CBLAS_ORDER Order, const enum CBLAS_UPLO Uplo, const enum CBLAS_TRANSPOSE Trans,
                        const blasint N, const blasint K, const float alpha, const float *A, const blasint lda,
                        const float beta, float *C, const blasint ldc) {
  TARGET(ssyrk_t, 0, cblas_ssyrk)
  target(Order, Uplo, Trans, N, K, alpha, A, lda, beta, C, ldc);
}

typedef void (*dsyrk_t)(const enum CBLAS_ORDER, const enum CBLAS_UPLO, const enum CBLAS_TRANSPOSE, const blasint,
                        const blasint, const double, const double *, const blasint, const double, double *,
                        const blasint);
HIDDEN void cblas_dsyrk(const enum CBLAS_ORDER Order, const enum CBLAS_UPLO Uplo, const enum CBLAS_TRANSPOSE Trans,
                        const blasint N, const blasint K, const double alpha, const double *A, const blasint lda,
                        const double beta, double *C, const blasint ldc) {
  TARGET(dsyrk_t, 0, cblas_dsyrk)
  target(Order, Uplo, Trans, N, K, alpha, A, lda, beta, C, ldc);
}

typedef void (*strsm_t)(const enum CBLAS_ORDER, const enum CBLAS_SIDE, const enum CBLAS_UPLO,
                        const enum CBLAS_TRANSPOSE, const enum CBLAS_DIAG, const blasint, const blasint, const float,
                        const float *, const blasint, float *, const blasint);
HIDDEN void cblas_strsm(const enum CBLAS_ORDER Order, const enum CBLAS_SIDE Side, const enum CBLAS_UPLO Uplo,
                        const enum CBLAS_TRANSPOSE TransA, const enum CBLAS_DIAG Diag, const blasint M,
                        const blasint N, const float alpha, const float *A, const blasint lda, float *B,
                        const blasint ldb) {
  TARGET(strsm_t, 0, cblas_strsm)
  target(Order, Side, Uplo, TransA, Diag, M, N, alpha, A, lda, B, ldb);
}

typedef void (*set_threads_t)(int);
HIDDEN void openblas_set_num_threads(int num_threads) {
  TARGET(set_threads_t, 0, openblas_set_num_threads)
  target(num_threads);
}

typedef int (*get_threads_t)(void);
HIDDEN int openblas_get_num_threads(void) {
  TARGET(get_threads_t, 0, openblas_get_num_threads)
  return target();
}

typedef char *(*get_config_t)(void);
HIDDEN char *openblas_get_config(void) {
  TARGET(get_config_t, 0, openblas_get_config)
  return target();
}

typedef lapack_int (*sgesvd_t)(int, char, char, lapack_int, lapack_int, float *, lapack_int, float *, float *,
                               lapack_int, float *, lapack_int, float *, lapack_int);
HIDDEN lapack_int LAPACKE_sgesvd_work(int matrix_layout, char jobu, char jobvt, lapack_int m, lapack_int n, float *a,
                                      lapack_int lda, float *s, float *u, lapack_int ldu, float *vt, lapack_int ldvt,
                                      float *work, lapack_int lwork) {
  TARGET(sgesvd_t, 1, LAPACKE_sgesvd_work)
  return target(matrix_layout, jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork);
}

typedef lapack_int (*sgesdd_t)(int, char, lapack_int, lapack_int, float *, lapack_int, float *, float *, lapack_int,
                               float *, lapack_int, float *, lapack_int, lapack_int *);
HIDDEN lapack_int LAPACKE_sgesdd_work(int matrix_layout, char jobz, lapack_int m, lapack_int n, float *a,
                                      lapack_int lda, float *s, float *u, lapack_int ldu, float *vt, lapack_int ldvt,
                                      float *work, lapack_int lwork, lapack_int *iwork) {
  TARGET(sgesdd_t, 1, LAPACKE_sgesdd_work)
  return target(matrix_layout, jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork);
}

typedef lapack_int (*ssyevd_t)(int, char, char, lapack_int, float *, lapack_int, float *, float *, lapack_int,
                               lapack_int *, lapack_int);
HIDDEN lapack_int LAPACKE_ssyevd_work(int matrix_layout, char jobz, char uplo, lapack_int n, float *a, lapack_int lda,
                                      float *w, float *work, lapack_int lwork, lapack_int *iwork,
                                      lapack_int liwork) {
  TARGET(ssyevd_t, 1, LAPACKE_ssyevd_work)
  return target(matrix_layout, jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork);
}

typedef lapack_int (*spotrf_t)(int, char, lapack_int, float *, lapack_int);
HIDDEN lapack_int LAPACKE_spotrf_work(int matrix_layout, char uplo, lapack_int n, float *a, lapack_int lda) {
  TARGET(spotrf_t, 1, LAPACKE_spotrf_work)
  return target(matrix_layout, uplo, n, a, lda);
}

typedef lapack_int (*sorgxx_t)(int, lapack_int, lapack_int, lapack_int, float *, lapack_int, const float *, float *,
                               lapack_int);
HIDDEN lapack_int LAPACKE_sorgqr_work(int matrix_layout, lapack_int m, lapack_int n, lapack_int k, float *a,
                                      lapack_int lda, const float *tau, float *work, lapack_int lwork) {
  TARGET(sorgxx_t, 1, LAPACKE_sorgqr_work)
  return target(matrix_layout, m, n, k, a, lda, tau, work, lwork);
}
HIDDEN lapack_int LAPACKE_sorglq_work(int matrix_layout, lapack_int m, lapack_int n, lapack_int k, float *a,
                                      lapack_int lda, const float *tau, float *work, lapack_int lwork) {
  TARGET(sorgxx_t, 1, LAPACKE_sorglq_work)
  return target(matrix_layout, m, n, k, a, lda, tau, work, lwork);
}

typedef lapack_int (*sgexxf_t)(int, lapack_int, lapack_int, float *, lapack_int, float *, float *, lapack_int);
HIDDEN lapack_int LAPACKE_sgeqrf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                                      float *tau, float *work, lapack_int lwork) {
  TARGET(sgexxf_t, 1, LAPACKE_sgeqrf_work)
  return target(matrix_layout, m, n, a, lda, tau, work, lwork);
}
HIDDEN lapack_int LAPACKE_sgelqf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                                      float *tau, float *work, lapack_int lwork) {
  TARGET(sgexxf_t, 1, LAPACKE_sgelqf_work)
  return target(matrix_layout, m, n, a, lda, tau, work, lwork);
}

typedef lapack_int (*sgeqp3_t)(int, lapack_int, lapack_int, float *, lapack_int, lapack_int *, float *, float *,
                               lapack_int);
HIDDEN lapack_int LAPACKE_sgeqp3_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                                      lapack_int *jpvt, float *tau, float *work, lapack_int lwork) {
  TARGET(sgeqp3_t, 1, LAPACKE_sgeqp3_work)
  return target(matrix_layout, m, n, a, lda, jpvt, tau, work, lwork);
}

typedef lapack_int (*strtri_t)(int, char, char, lapack_int, float *, lapack_int);
HIDDEN lapack_int LAPACKE_strtri_work(int matrix_layout, char uplo, char diag, lapack_int n, float *a,
                                      lapack_int lda) {
  TARGET(strtri_t, 1, LAPACKE_strtri_work)
  return target(matrix_layout, uplo, diag, n, a, lda);
}

typedef lapack_int (*sgetrf_t)(int, lapack_int, lapack_int, float *, lapack_int, lapack_int *);
HIDDEN lapack_int LAPACKE_sgetrf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                                      lapack_int *ipiv) {
  TARGET(sgetrf_t, 1, LAPACKE_sgetrf_work)
  return target(matrix_layout, m, n, a, lda, ipiv);
}
