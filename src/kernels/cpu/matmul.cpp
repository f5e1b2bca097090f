// Matrix products (OpenBLAS) and the Linear layer built on them.
#include <cblas.h>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

template <>
void gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

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
  if (dbias) {
    // Each thread owns a slice of columns and walks the rows in order: contiguous and deterministic.
#pragma omp parallel
    {
      const Range cols = share(O, omp_get_thread_num(), omp_get_num_threads());
      for (int n = 0; n < N; ++n) {
        const T* row = dout + int64_t{n} * O;
        for (int64_t o = cols.begin; o < cols.end; ++o) dbias[o] += row[o];
      }
    }
  }
}

#define KL_INSTANTIATE(T)                                                                 \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int, int, int);       \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
