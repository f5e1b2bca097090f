// GELU in the exact erf form, PyTorch's default (approximate='none'):
//   gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  gelu'(x) = Phi(x) + x phi(x).
//
// double uses the C library's erf and exp (the reference precision of the gradient tests). float,
// the training path, uses the branch-free approximations below, which the compiler vectorises;
// libm's scalar erff alone took over a tenth of a training step. Their error (at most 2.4e-7
// absolute over [-12, 12]) is at float's rounding level; tests/unit/test_ops_grad.cpp bounds it
// against double.
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

// Phi(x) and phi(x) for one exp: erfc(z) = t (a1 + t (a2 + ... + t a5)) exp(-z^2) with
// t = 1 / (1 + p z), z = |x| / sqrt 2 (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7),
// and the normal density phi(x) = exp(-z^2) / sqrt(2 pi) from the same exp. GELU's backward pass
// needs both: one exp per element instead of two, and a degree-5 polynomial instead of degree 9.
struct NormalCdfPdf {
  float cdf, pdf;
};
inline NormalCdfPdf normal_cdf_pdf(float x) {
  const float z = (x < 0 ? -x : x) * 0.70710678118654752f;
  const float e = exp_nonpositive(-z * z);
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float half_erfc = 0.5f * poly * e;  // Phi(-|x|)
  return {x >= 0 ? 1.0f - half_erfc : half_erfc, 0.39894228040143267794f * e};
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// gelu(x) and gelu'(x): the float forms vectorise, the double ones are libm's.
inline float gelu(float x) { return x * normal_cdf_pdf(x).cdf; }
inline float gelu_slope(float x) {
  const NormalCdfPdf n = normal_cdf_pdf(x);
  return n.cdf + x * n.pdf;
}
inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x * kInvSqrt2)); }
inline double gelu_slope(double x) {
  const double cdf = 0.5 * (1.0 + std::erf(x * kInvSqrt2));
  return cdf + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
}

}  // namespace

// A: the element type (float, double or bf16); the arithmetic is in compute_t<A>.
template <class A>
void gelu_forward(A* out, const A* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) store(out[i], gelu(load(inp[i])));
}

template <class A>
void gelu_backward(A* dinp, const A* inp, const A* dout, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) store(dinp[i], load(dout[i]) * gelu_slope(load(inp[i])));
}

template <class A>
void bias_gelu_forward(A* pre, A* out, const A* bias, int N, int O) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    A* pre_row = pre + int64_t{n} * O;
    A* out_row = out + int64_t{n} * O;
#pragma omp simd
    for (int o = 0; o < O; ++o) {
      store(pre_row[o], load(pre_row[o]) + load(bias[o]));
      store(out_row[o], gelu(load(pre_row[o])));  // GELU reads the pre-activation as stored
    }
  }
}

template <class A, class S>
void gelu_backward_bias(A* dpre, S* dbias, const A* pre, const A* dout, int N, int O) {
  if (!dbias) return gelu_backward(dpre, pre, dout, int64_t{N} * O);
  // The bias gradient summed as linear_backward sums it (add_column_sums): the same bits, whatever
  // the thread count. dpre may be dout. With bf16 the sum is of the rounded gradient, as
  // linear_backward would sum it.
  add_column_sums(dbias, N, O, [=](int64_t i) {
    store(dpre[i], load(dout[i]) * gelu_slope(load(pre[i])));
    return load(dpre[i]);
  });
}

#define KL_INSTANTIATE(A, S)                                                 \
  template void gelu_forward<A>(A*, const A*, int64_t);                      \
  template void gelu_backward<A>(A*, const A*, const A*, int64_t);           \
  template void bias_gelu_forward<A>(A*, A*, const A*, int, int);            \
  template void gelu_backward_bias<A, S>(A*, S*, const A*, const A*, int, int);
KL_INSTANTIATE(float, float)
KL_INSTANTIATE(double, double)
KL_INSTANTIATE(bf16, float)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
