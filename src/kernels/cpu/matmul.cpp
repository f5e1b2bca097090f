// Matrix products (oneDNN for fp32, OpenBLAS for fp64, or a plain loop in builds without them) and
// the Linear layer built on them. oneDNN won the measurement of bench/gemm_candidates.cpp on the
// model's products (docs/performance.md); it also picks its AVX-512 kernels whatever
// OPENBLAS_CORETYPE says.
#ifdef KL_HAVE_BLAS
#include <cblas.h>
#endif

#include "src/kernels/cpu/onednn.h"
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"
#include "src/util/error.h"

namespace kl::cpu {

#ifdef KL_HAVE_ONEDNN
template <>
void gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  onednn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#elif defined(KL_HAVE_BLAS)
template <>
void gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

#ifdef KL_HAVE_BLAS

template <>
void gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#else
// Without BLAS (-DKL_BLAS=OFF): C = alpha op(A) op(B) + beta C, row-major, BLAS's contract (beta = 0
// never reads C). Correct and slow, for builds where the CPU path only serves tests and references.
// Rows of C are shared among threads and each element is summed over k in a fixed order, so the
// result is the same for any thread count.
template <class T>
void plain_gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
                int ldb, T beta, T* c, int ldc) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; ++i) {
    T* c_row = c + int64_t{i} * ldc;
    for (int j = 0; j < n; ++j) c_row[j] = beta == T(0) ? T(0) : beta * c_row[j];
    if (!trans_b) {
      // Row p of B is contiguous: add a(i,p) times it (a loop the compiler vectorises).
      for (int p = 0; p < k; ++p) {
        const T a_ip = alpha * (trans_a ? a[int64_t{p} * lda + i] : a[int64_t{i} * lda + p]);
        const T* b_row = b + int64_t{p} * ldb;
        for (int j = 0; j < n; ++j) c_row[j] += a_ip * b_row[j];
      }
    } else if (!trans_a) {
      // Two contiguous rows: a dot product, in 8 interleaved partial sums that the compiler can
      // vectorise (one running sum would be a chain of dependent additions).
      const T* a_row = a + int64_t{i} * lda;
      for (int j = 0; j < n; ++j) {
        const T* b_row = b + int64_t{j} * ldb;
        T partial[8] = {};
        int p = 0;
        for (; p + 8 <= k; p += 8) {
          for (int u = 0; u < 8; ++u) partial[u] += a_row[p + u] * b_row[p + u];
        }
        for (; p < k; ++p) partial[0] += a_row[p] * b_row[p];
        const T sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
                      ((partial[4] + partial[5]) + (partial[6] + partial[7]));
        c_row[j] += alpha * sum;
      }
    } else {
      for (int j = 0; j < n; ++j) {
        const T* b_row = b + int64_t{j} * ldb;
        T sum = 0;
        for (int p = 0; p < k; ++p) sum += a[int64_t{p} * lda + i] * b_row[p];
        c_row[j] += alpha * sum;
      }
    }
  }
}

#ifndef KL_HAVE_ONEDNN
template <>
void gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  plain_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

template <>
void gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  plain_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

template <class T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int I, int O) {
  T beta = 0;
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < O; ++o) out[int64_t{n} * O + o] = bias[o];
    }
    beta = 1;
  }
  gemm<T>(false, true, N, O, I, T(1), inp, I, weight, I, beta, out, O);
}

template <class T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int I, int O) {
  if (dinp) gemm<T>(false, false, N, I, O, T(1), dout, O, weight, I, T(0), dinp, I);
  if (dweight) gemm<T>(true, false, O, I, N, T(1), dout, O, inp, I, T(1), dweight, I);
  // Summed by row blocks in a fixed order (add_column_sums), as GELU's fused bias sum: deterministic.
  if (dbias) add_column_sums(dbias, N, O, [=](int64_t i) { return dout[i]; });
}

void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int I, int O) {
  bf16_matmul(false, true, N, O, I, inp, I, weight, I, bias, 0.0f, out, O);
}

void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                     int N, int I, int O) {
  if (dinp) bf16_matmul(false, false, N, I, O, dout, O, weight, I, nullptr, 0.0f, dinp, I);
  if (dweight) bf16_matmul(true, false, O, I, N, dout, O, inp, I, nullptr, 1.0f, dweight, I);
  if (dbias) add_column_sums(dbias, N, O, [=](int64_t i) { return load(dout[i]); });
}

#define KL_INSTANTIATE(T)                                                                 \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int, int, int);       \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
