// Fused softmax + cross-entropy over the first V of Vp columns (model.vocab_padded: the padded
// columns are neither in the softmax nor in the gradient).
#include <cmath>

#include "src/kernels/cpu/ops.h"

namespace kl::cpu {

template <class T>
void softmax_xent_forward(T* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V, int Vp) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* z = logits + int64_t{n} * Vp;
    T* p = probs + int64_t{n} * Vp;
    T max = z[0];
    for (int v = 1; v < V; ++v) max = z[v] > max ? z[v] : max;
    T sum = 0;
    for (int v = 0; v < V; ++v) {
      p[v] = std::exp(z[v] - max);
      sum += p[v];
    }
    const T inv = T(1) / sum;
    for (int v = 0; v < V; ++v) p[v] *= inv;
    for (int v = V; v < Vp; ++v) p[v] = 0;
    losses[n] = -std::log(p[targets[n]]);
  }
}

template <class T>
void softmax_xent_backward(T* dlogits, const T* probs, const int32_t* targets, T dloss, int N,
                           int V, int Vp) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* p = probs + int64_t{n} * Vp;
    T* d = dlogits + int64_t{n} * Vp;
    for (int v = 0; v < V; ++v) d[v] = p[v] * dloss;
    for (int v = V; v < Vp; ++v) d[v] = 0;
    d[targets[n]] -= dloss;
  }
}

#define KL_INSTANTIATE(T)                                                                     \
  template void softmax_xent_forward<T>(T*, T*, const T*, const int32_t*, int, int, int);    \
  template void softmax_xent_backward<T>(T*, const T*, const int32_t*, T, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
