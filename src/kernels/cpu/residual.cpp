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

template <class T>
void add_scaled(T* out, T alpha, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i] + b[i];
}

template <class T>
void scale_by(T* out, const T* scale, int scale_size, const T* in, int64_t n, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = scale[scale_index(scale_size, i, C)] * in[i];
}

template <class T>
void scaled_join(T* v, const T* u, const T* scale, int scale_size, const T* branch, int64_t n, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) v[i] = u[i] + scale[scale_index(scale_size, i, C)] * branch[i];
}

template <class T>
void scale_grad(T* grad, int scale_size, const T* dres, const T* kept, int N, int C, T* temp) {
  // Each thread owns a block of columns and walks every row in order, so a column's sum does not
  // depend on the thread count; the columns then go into the gradient in order (one scalar for
  // rezero takes all of them).
#pragma omp parallel
  {
    const Range cols = share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t c = cols.begin; c < cols.end; ++c) temp[c] = T(0);
    for (int n = 0; n < N; ++n) {
      const int64_t at = int64_t{n} * C;
      for (int64_t c = cols.begin; c < cols.end; ++c) temp[c] += dres[at + c] * kept[at + c];
    }
  }
  for (int64_t c = 0; c < C; ++c) grad[scale_size == 1 ? 0 : c] += temp[c];
}

template <class T>
void highway_join(T* gate, T* v, const T* branch, const T* u, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = T(1) / (T(1) + std::exp(-gate[i]));
    gate[i] = g;
    v[i] = g * branch[i] + (T(1) - g) * u[i];
  }
}

template <class T>
void highway_join_backward(T* dbranch, T* dz, T* dres, const T* gate, const T* kept, const T* u, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i], dv = dres[i];
    dbranch[i] = g * dv;
    dz[i] = (kept[i] - u[i]) * dv * g * (T(1) - g);
    dres[i] = (T(1) - g) * dv;
  }
}

#define KL_INSTANTIATE(T)                                                                         \
  template void add_scaled<T>(T*, T, const T*, const T*, int64_t);                                \
  template void scale_by<T>(T*, const T*, int, const T*, int64_t, int);                           \
  template void scaled_join<T>(T*, const T*, const T*, int, const T*, int64_t, int);              \
  template void scale_grad<T>(T*, int, const T*, const T*, int, int, T*);                         \
  template void highway_join<T>(T*, T*, const T*, const T*, int64_t);                             \
  template void highway_join_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
