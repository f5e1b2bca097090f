// Fused softmax + cross-entropy over the first V of Vp columns (model.vocab_padded: the padded
// columns are neither in the softmax nor in the gradient).
#include <cmath>
#include <type_traits>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

template <class T, class A>
void softmax_xent_forward(T* losses, A* probs, const A* logits, const int32_t* targets, int N,
                          int V, int Vp) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const A* z = logits + int64_t{n} * Vp;
    A* p = probs + int64_t{n} * Vp;
    // The exps in T: in the output row itself when it is T, else in this thread's scratch row.
    T* e;
    if constexpr (std::is_same_v<A, T>) {
      e = p;
    } else {
      e = thread_buffer<T, Scratch::kSoftmaxRow>(V);
    }
    T max = z[0];
    for (int v = 1; v < V; ++v) max = load(z[v]) > max ? load(z[v]) : max;
    T sum = 0;
    for (int v = 0; v < V; ++v) {
      e[v] = std::exp(load(z[v]) - max);
      sum += e[v];
    }
    const T inv = T(1) / sum;
    for (int v = 0; v < V; ++v) e[v] *= inv;
    losses[n] = -std::log(e[targets[n]]);
    if constexpr (!std::is_same_v<A, T>) {
      for (int v = 0; v < V; ++v) store(p[v], e[v]);
    }
    for (int v = V; v < Vp; ++v) store(p[v], T(0));
  }
}

template <class A>
void softmax_xent_backward(A* dlogits, const A* probs, const int32_t* targets, compute_t<A> dloss, int N,
                           int V, int Vp) {
  using T = compute_t<A>;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const A* p = probs + int64_t{n} * Vp;
    A* d = dlogits + int64_t{n} * Vp;
    const int t = targets[n];
    const T p_t = load(p[t]);  // read before the row is overwritten (d may be p)
    for (int v = 0; v < V; ++v) store(d[v], load(p[v]) * dloss);
    for (int v = V; v < Vp; ++v) store(d[v], T(0));
    // From the stored value where it is exact (A = T), else from the unrounded product.
    store(d[t], (std::is_same_v<A, T> ? load(d[t]) : p_t * dloss) - dloss);
  }
}

template void softmax_xent_forward<float, float>(float*, float*, const float*, const int32_t*, int, int, int);
template void softmax_xent_forward<double, double>(double*, double*, const double*, const int32_t*, int, int, int);
template void softmax_xent_forward<float, bf16>(float*, bf16*, const bf16*, const int32_t*, int, int, int);
template void softmax_xent_backward<float>(float*, const float*, const int32_t*, float, int, int, int);
template void softmax_xent_backward<double>(double*, const double*, const int32_t*, double, int, int, int);
template void softmax_xent_backward<bf16>(bf16*, const bf16*, const int32_t*, float, int, int, int);

}  // namespace kl::cpu
