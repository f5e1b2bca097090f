// LayerNorm over the last dimension, eps 1e-5 (PyTorch's default), with weight and bias.
#include <cmath>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

namespace {
constexpr double kEps = 1e-5;
}

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* x = inp + int64_t{n} * C;
    T* y = out + int64_t{n} * C;
    T sum = 0;
    for (int c = 0; c < C; ++c) sum += x[c];
    const T m = sum / C;
    T var = 0;
    for (int c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
    const T s = T(1) / std::sqrt(var / C + T(kEps));
    for (int c = 0; c < C; ++c) y[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                        const T* weight, const T* mean, const T* rstd, int N, int C) {
#pragma omp parallel
  {
    // Rows in parallel for the input gradient.
#pragma omp for schedule(static)
    for (int n = 0; n < (dinp ? N : 0); ++n) {
      const T* x = inp + int64_t{n} * C;
      const T* dy = dout + int64_t{n} * C;
      T* dx = dinp + int64_t{n} * C;
      const T m = mean[n], s = rstd[n];
      T dnorm_mean = 0, dnorm_norm_mean = 0;
      for (int c = 0; c < C; ++c) {
        const T dnorm = dy[c] * weight[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (x[c] - m) * s;
      }
      dnorm_mean /= C;
      dnorm_norm_mean /= C;
      for (int c = 0; c < C; ++c) {
        const T norm = (x[c] - m) * s;
        dx[c] += (dy[c] * weight[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
    // Columns in parallel for the parameter gradients: each thread sums its channels over all rows.
    const Range cols = share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int n = 0; n < (dweight ? N : 0); ++n) {
      const T* x = inp + int64_t{n} * C;
      const T* dy = dout + int64_t{n} * C;
      const T m = mean[n], s = rstd[n];
      for (int64_t c = cols.begin; c < cols.end; ++c) {
        dweight[c] += dy[c] * (x[c] - m) * s;
        if (dbias) dbias[c] += dy[c];
      }
    }
  }
}

#define KL_INSTANTIATE(T)                                                                       \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int, int);       \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                      const T*, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
