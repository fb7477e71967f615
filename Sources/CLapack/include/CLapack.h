#ifndef SWIFTCOMPRESS_CLAPACK_H
#define SWIFTCOMPRESS_CLAPACK_H
// The BLAS and LAPACKE functions swiftcompress calls, declared as OpenBLAS's cblas.h and
// LAPACKE's lapacke.h declare them (LP64: 32-bit integers, as Debian's libopenblas0 and
// liblapacke ship them). They are defined in lazy.c, which loads the libraries on the
// first call: a command that never multiplies a matrix (quantize, prune, convert,
// inspect) does not pay for loading a dozen libraries at start.
#include <stdint.h>

typedef int blasint;
typedef int32_t lapack_int;

typedef enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 } CBLAS_ORDER;
typedef enum CBLAS_TRANSPOSE {
  CblasNoTrans = 111,
  CblasTrans = 112,
  CblasConjTrans = 113,
  CblasConjNoTrans = 114
} CBLAS_TRANSPOSE;
typedef enum CBLAS_UPLO { CblasUpper = 121, CblasLower = 122 } CBLAS_UPLO;
typedef enum CBLAS_DIAG { CblasNonUnit = 131, CblasUnit = 132 } CBLAS_DIAG;
typedef enum CBLAS_SIDE { CblasLeft = 141, CblasRight = 142 } CBLAS_SIDE;

#define LAPACK_ROW_MAJOR 101
#define LAPACK_COL_MAJOR 102
#define LAPACK_WORK_MEMORY_ERROR -1010
#define LAPACK_TRANSPOSE_MEMORY_ERROR -1011

void cblas_sgemm(const enum CBLAS_ORDER Order, const enum CBLAS_TRANSPOSE TransA, const enum CBLAS_TRANSPOSE TransB,
                 const blasint M, const blasint N, const blasint K, const float alpha, const float *A,
                 const blasint lda, const float *B, const blasint ldb, const float beta, float *C,
                 const blasint ldc);
void cblas_ssyrk(const enum CBLAS_ORDER Order, const enum CBLAS_UPLO Uplo, const enum CBLAS_TRANSPOSE Trans,
                 const blasint N, const blasint K, const float alpha, const float *A, const blasint lda,
                 const float beta, float *C, const blasint ldc);
void cblas_dsyrk(const enum CBLAS_ORDER Order, const enum CBLAS_UPLO Uplo, const enum CBLAS_TRANSPOSE Trans,
                 const blasint N, const blasint K, const double alpha, const double *A, const blasint lda,
                 const double beta, double *C, const blasint ldc);
void cblas_strsm(const enum CBLAS_ORDER Order, const enum CBLAS_SIDE Side, const enum CBLAS_UPLO Uplo,
                 const enum CBLAS_TRANSPOSE TransA, const enum CBLAS_DIAG Diag, const blasint M, const blasint N,
                 const float alpha, const float *A, const blasint lda, float *B, const blasint ldb);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);

lapack_int LAPACKE_sgesvd_work(int matrix_layout, char jobu, char jobvt, lapack_int m, lapack_int n, float *a,
                               lapack_int lda, float *s, float *u, lapack_int ldu, float *vt, lapack_int ldvt,
                               float *work, lapack_int lwork);
lapack_int LAPACKE_sgesdd_work(int matrix_layout, char jobz, lapack_int m, lapack_int n, float *a, lapack_int lda,
                               float *s, float *u, lapack_int ldu, float *vt, lapack_int ldvt, float *work,
                               lapack_int lwork, lapack_int *iwork);
lapack_int LAPACKE_ssyevd_work(int matrix_layout, char jobz, char uplo, lapack_int n, float *a, lapack_int lda,
                               float *w, float *work, lapack_int lwork, lapack_int *iwork, lapack_int liwork);
lapack_int LAPACKE_spotrf_work(int matrix_layout, char uplo, lapack_int n, float *a, lapack_int lda);
lapack_int LAPACKE_sorgqr_work(int matrix_layout, lapack_int m, lapack_int n, lapack_int k, float *a,
                               lapack_int lda, const float *tau, float *work, lapack_int lwork);
lapack_int LAPACKE_sorglq_work(int matrix_layout, lapack_int m, lapack_int n, lapack_int k, float *a,
                               lapack_int lda, const float *tau, float *work, lapack_int lwork);
lapack_int LAPACKE_sgeqrf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda, float *tau,
                               float *work, lapack_int lwork);
lapack_int LAPACKE_sgeqp3_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                               lapack_int *jpvt, float *tau, float *work, lapack_int lwork);
lapack_int LAPACKE_sgelqf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda, float *tau,
                               float *work, lapack_int lwork);
lapack_int LAPACKE_strtri_work(int matrix_layout, char uplo, char diag, lapack_int n, float *a, lapack_int lda);
lapack_int LAPACKE_sgetrf_work(int matrix_layout, lapack_int m, lapack_int n, float *a, lapack_int lda,
                               lapack_int *ipiv);

#endif
