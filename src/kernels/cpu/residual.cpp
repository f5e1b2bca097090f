// The joins of a branch with the residual stream, one op per piece of models/residual.h's variants.
// Each is the loop models/block.cpp ran inline, expression for expression, so that moving it here
// changes no bit of a CPU run.
#include <cmath>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {
namespace {

// One scalar (rezero) or one per channel (layerscale).
inline int64_t scale_index(int scale_size, int64_t i, int C) { return scale_size == 1 ? 0 : i % C; }

}  // namespace

// T: the stream (Acc), A: the branch's tensors (Act). load and store (src/kernels/cpu/bf16.h) are
// the value itself where A is T, so the float loops are unchanged.
template <class T, class A>
void add_scaled(T* out, T alpha, const T* a, const A* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i] + load(b[i]);
}

template <class T, class A>
void scale_by(A* out, const A* scale, int scale_size, const T* in, int64_t n, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) store(out[i], load(scale[scale_index(scale_size, i, C)]) * in[i]);
}

template <class T, class A>
void scaled_join(T* v, const T* u, const A* scale, int scale_size, const A* branch, int64_t n, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) v[i] = u[i] + load(scale[scale_index(scale_size, i, C)]) * load(branch[i]);
}

template <class T, class A>
void scale_grad(T* grad, int scale_size, const T* dres, const A* kept, int N, int C, T* temp) {
  // Each thread owns a block of columns and walks every row in order, so a column's sum does not
  // depend on the thread count; the columns then go into the gradient in order (one scalar for
  // rezero takes all of them).
#pragma omp parallel
  {
    const Range cols = share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t c = cols.begin; c < cols.end; ++c) temp[c] = T(0);
    for (int n = 0; n < N; ++n) {
      const int64_t at = int64_t{n} * C;
      for (int64_t c = cols.begin; c < cols.end; ++c) temp[c] += dres[at + c] * load(kept[at + c]);
    }
  }
  for (int64_t c = 0; c < C; ++c) grad[scale_size == 1 ? 0 : c] += temp[c];
}

template <class T, class A>
void highway_join(A* gate, T* v, const A* branch, const T* u, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = T(1) / (T(1) + std::exp(-load(gate[i])));
    store(gate[i], g);
    v[i] = g * load(branch[i]) + (T(1) - g) * u[i];
  }
}

template <class T, class A>
void highway_join_backward(A* dbranch, A* dz, T* dres, const A* gate, const A* kept, const T* u, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = load(gate[i]), dv = dres[i];
    store(dbranch[i], g * dv);
    store(dz[i], (load(kept[i]) - u[i]) * dv * g * (T(1) - g));
    dres[i] = (T(1) - g) * dv;
  }
}

#define KL_INSTANTIATE(T, A)                                                                      \
  template void add_scaled<T, A>(T*, T, const T*, const A*, int64_t);                             \
  template void scale_by<T, A>(A*, const A*, int, const T*, int64_t, int);                        \
  template void scaled_join<T, A>(T*, const T*, const A*, int, const A*, int64_t, int);           \
  template void scale_grad<T, A>(T*, int, const T*, const A*, int, int, T*);                      \
  template void highway_join<T, A>(A*, T*, const A*, const T*, int64_t);                          \
  template void highway_join_backward<T, A>(A*, A*, T*, const A*, const A*, const T*, int64_t);
KL_INSTANTIATE(float, float)
KL_INSTANTIATE(double, double)
KL_INSTANTIATE(float, bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
