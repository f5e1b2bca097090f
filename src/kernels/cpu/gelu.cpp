// GELU in the exact erf form, PyTorch's default (approximate='none'):
//   gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  gelu'(x) = Phi(x) + x phi(x).
//
// double uses the C library's erf and exp (the reference precision of the gradient tests). float,
// the training path, uses the branch-free approximations below, which the compiler vectorises;
// libm's scalar erff alone took over a tenth of a training step. Their error (a few 1e-7
// absolute) is at float's rounding level; tests/test_ops_grad.cpp bounds it against double.
#include <cmath>
#include <cstdint>

#include "src/kernels/cpu/fast_exp.h"
#include "src/kernels/cpu/ops.h"

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

}  // namespace

template <>
void gelu_forward<float>(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * normal_cdf(inp[i]);
}

template <>
void gelu_backward<float>(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    const float pdf = float(kInvSqrt2Pi) * exp_nonpositive(-0.5f * x * x);
    dinp[i] = dout[i] * (normal_cdf(x) + x * pdf);
  }
}

template <>
void gelu_forward<double>(double* out, const double* inp, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = 0.5 * inp[i] * (1.0 + std::erf(inp[i] * kInvSqrt2));
}

template <>
void gelu_backward<double>(double* dinp, const double* inp, const double* dout, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double x = inp[i];
    const double cdf = 0.5 * (1.0 + std::erf(x * kInvSqrt2));
    dinp[i] = dout[i] * (cdf + x * kInvSqrt2Pi * std::exp(-0.5 * x * x));
  }
}

}  // namespace kl::cpu
