// Finite-difference gradient checks in double precision, and the kernel tests' small helpers.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace kl::test {

inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Runs body under `threads` OpenMP threads, then restores the previous count.
template <class F>
void with_threads(int threads, F body) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  body();
  omp_set_num_threads(before);
}

inline std::vector<double> random_vector(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

// Compares analytic[i] with the central difference (loss(x + h e_i) - loss(x - h e_i)) / 2h for
// every i of x. `loss` must read x through the same storage. Tolerance abs + rel x |fd|.
inline void expect_gradient(const std::string& what, double* x, const double* analytic, int64_t n,
                            const std::function<double()>& loss, double abs_tol = 1e-7,
                            double rel_tol = 1e-5, double h = 1e-5) {
  int failures = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = loss();
    x[i] = saved - h;
    const double minus = loss();
    x[i] = saved;
    const double fd = (plus - minus) / (2 * h);
    if (std::abs(fd - analytic[i]) > abs_tol + rel_tol * std::abs(fd)) {
      if (++failures <= 5) {
        ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs finite difference "
                      << fd;
      }
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << n << " elements differ";
}

// sum(out * weights): a scalar whose gradient with respect to out is `weights`.
inline double weighted_sum(const std::vector<double>& out, const std::vector<double>& weights) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * weights[i];
  return s;
}

}  // namespace kl::test
