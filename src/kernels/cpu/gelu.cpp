// GELU in the exact erf form, PyTorch's default (approximate='none').
#include <cmath>

#include "src/kernels/cpu/ops.h"

namespace kl::cpu {

template <class T>
void gelu_forward(T* out, const T* inp, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T x = inp[i];
    out[i] = T(0.5) * x * (T(1) + std::erf(x * inv_sqrt2));
  }
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440);
  const T inv_sqrt_2pi = T(0.39894228040143267794);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T x = inp[i];
    const T cdf = T(0.5) * (T(1) + std::erf(x * inv_sqrt2));
    const T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * x * x);
    dinp[i] = dout[i] * (cdf + x * pdf);
  }
}

#define KL_INSTANTIATE(T)                                  \
  template void gelu_forward<T>(T*, const T*, int64_t);    \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
