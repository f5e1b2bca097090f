// GELU in the exact erf form, PyTorch's default (approximate='none'):
//   gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  gelu'(x) = Phi(x) + x phi(x).
//
// double uses the C library's erf and exp (the reference precision of the gradient tests). float,
// the training path, uses the branch-free approximations below, which the compiler vectorises;
// libm's scalar erff alone took over a tenth of a training step. Their error (a few 1e-7
// absolute) is at float's rounding level; tests/test_ops_grad.cpp bounds it against double.
//
// The MLP's fc layer has its bias added here rather than in its product (bias_gelu_forward), and
// its bias gradient summed in GELU's backward pass (gelu_backward_bias): each saves one pass over
// the [N, 4C] hidden units (docs/performance.md has the profile).
#include <cmath>
#include <cstdint>

#include "src/kernels/cpu/fast_exp.h"
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {
namespace {

// erfc(|x|) by the Chebyshev fit of Numerical Recipes (6.2), fractional error below 1.2e-7.
inline float erfc_abs(float x) {
  const float z = x < 0 ? -x : x;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f +
                          t * (0.27886807f +
                               t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  return t * exp_nonpositive(-z * z + poly);
}

// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 erfc(-x / sqrt 2).
inline float normal_cdf(float x) {
  const float half_erfc = 0.5f * erfc_abs(x * 0.70710678118654752f);
  return x >= 0 ? 1.0f - half_erfc : half_erfc;
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// gelu(x) and gelu'(x): the float forms vectorise, the double ones are libm's.
inline float gelu(float x) { return x * normal_cdf(x); }
inline float gelu_slope(float x) {
  const float pdf = float(kInvSqrt2Pi) * exp_nonpositive(-0.5f * x * x);
  return normal_cdf(x) + x * pdf;
}
inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x * kInvSqrt2)); }
inline double gelu_slope(double x) {
  const double cdf = 0.5 * (1.0 + std::erf(x * kInvSqrt2));
  return cdf + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
}

}  // namespace

template <class T>
void gelu_forward(T* out, const T* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = gelu(inp[i]);
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * gelu_slope(inp[i]);
}

template <class T>
void bias_gelu_forward(T* pre, T* out, const T* bias, int N, int O) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    T* pre_row = pre + int64_t{n} * O;
    T* out_row = out + int64_t{n} * O;
#pragma omp simd
    for (int o = 0; o < O; ++o) {
      const T x = pre_row[o] + bias[o];
      pre_row[o] = x;
      out_row[o] = gelu(x);
    }
  }
}

template <class T>
void gelu_backward_bias(T* dpre, T* dbias, const T* pre, const T* dout, int N, int O) {
  if (!dbias) return gelu_backward(dpre, pre, dout, int64_t{N} * O);
  // Each thread owns a slice of columns and walks the rows in order, as linear_backward's bias sum
  // does: the same sums in the same order, whatever the thread count.
#pragma omp parallel
  {
    const Range cols = share(O, omp_get_thread_num(), omp_get_num_threads());
    const int begin = static_cast<int>(cols.begin), end = static_cast<int>(cols.end);
    for (int n = 0; n < N; ++n) {
      const int64_t row = int64_t{n} * O;
#pragma omp simd
      for (int o = begin; o < end; ++o) {
        const T d = dout[row + o] * gelu_slope(pre[row + o]);
        dpre[row + o] = d;
        dbias[o] += d;
      }
    }
  }
}

#define KL_INSTANTIATE(T)                                                    \
  template void gelu_forward<T>(T*, const T*, int64_t);                      \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);           \
  template void bias_gelu_forward<T>(T*, T*, const T*, int, int);            \
  template void gelu_backward_bias<T>(T*, T*, const T*, const T*, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
