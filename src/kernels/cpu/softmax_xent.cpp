// Fused softmax + cross-entropy.
#include <cmath>

#include "src/kernels/cpu/ops.h"

namespace kl::cpu {

template <class T>
void softmax_xent_forward(T* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* z = logits + int64_t{n} * V;
    T* p = probs + int64_t{n} * V;
    T max = z[0];
    for (int v = 1; v < V; ++v) max = z[v] > max ? z[v] : max;
    T sum = 0;
    for (int v = 0; v < V; ++v) {
      p[v] = std::exp(z[v] - max);
      sum += p[v];
    }
    const T inv = T(1) / sum;
    for (int v = 0; v < V; ++v) p[v] *= inv;
    losses[n] = -std::log(p[targets[n]]);
  }
}

template <class T>
void softmax_xent_backward(T* dlogits, const T* probs, const int32_t* targets, T dloss, int N,
                           int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* p = probs + int64_t{n} * V;
    T* d = dlogits + int64_t{n} * V;
    for (int v = 0; v < V; ++v) d[v] = p[v] * dloss;
    d[targets[n]] -= dloss;
  }
}

#define KL_INSTANTIATE(T)                                                                     \
  template void softmax_xent_forward<T>(T*, T*, const T*, const int32_t*, int, int);         \
  template void softmax_xent_backward<T>(T*, const T*, const int32_t*, T, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
