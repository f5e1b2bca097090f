// AdamW (Loshchilov & Hutter), in PyTorch's formulation so that a PyTorch run can be matched:
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// plus the reductions the optimizer needs.
#include <cmath>
#include <vector>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

template <class T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step) {
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const T step_size = T(lr / bias1);
  const T inv_sqrt_bias2 = T(1.0 / std::sqrt(bias2));
  const T decay = T(1.0 - lr * weight_decay);
  const T b1 = T(beta1), b2 = T(beta2), e = T(eps);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    m[i] = b1 * m[i] + (T(1) - b1) * g;
    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
    param[i] = param[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + e);
  }
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  // Per-thread partial sums added in thread order: the same result for the same thread count.
  // The calling thread's buffer, reused (no allocation per step); workers write through `slots`.
  thread_local std::vector<double> partial;
  partial.assign(static_cast<size_t>(omp_get_max_threads()), 0.0);
  double* slots = partial.data();
  int threads_used = 1;
#pragma omp parallel
  {
    const int thread = omp_get_thread_num();
#pragma omp single
    threads_used = omp_get_num_threads();
    const Range range = share(n, thread, omp_get_num_threads());
    double sum = 0.0;
    // A simd reduction (lanes summed in an order fixed by the binary): a plain loop would be one
    // chain of dependent additions, float addition not being associative without -ffast-math.
#pragma omp simd reduction(+ : sum)
    for (int64_t i = range.begin; i < range.end; ++i) {
      const double xi = load(x[i]);
      sum += xi * xi;
    }
    slots[thread] = sum;
  }
  double total = 0.0;
  for (int t = 0; t < threads_used; ++t) total += partial[static_cast<size_t>(t)];
  return total;
}

template <class T>
void scale(T* x, int64_t n, T factor) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

#define KL_INSTANTIATE(T)                                                                      \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, double, double, double, double, \
                                double, int64_t);                                              \
  template double sum_squares<T>(const T*, int64_t);                                           \
  template void scale<T>(T*, int64_t, T);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE
template double sum_squares<bf16>(const bf16*, int64_t);

}  // namespace kl::cpu
