// cpu::gemm, whichever implementation this build has (OpenBLAS, or the plain loop of KL_BLAS=OFF),
// against a direct sum in long double: every transpose combination, leading dimensions wider than
// the rows, beta 0 (C never read: NaN in it must not leak), beta 1 (accumulate), and empty sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "src/kernels/cpu/ops.h"
#include "src/util/rng.h"

namespace kl {
namespace {

template <class T>
std::vector<T> values(size_t n, uint64_t seed) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = T(int(rng::mix64(seed * 1000003 + i) % 2001) - 1000) / T(1000);
  return v;
}

template <class T>
void check_gemm(bool ta, bool tb, int m, int n, int k, T alpha, T beta) {
  // Stored shapes: A is m x k (k x m transposed), B is k x n (n x k); 3 spare columns each.
  const int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int lda = a_cols + 3, ldb = b_cols + 3, ldc = n + 3;
  const auto a = values<T>(size_t(a_rows) * lda, 1), b = values<T>(size_t(b_rows) * ldb, 2);
  auto c = values<T>(size_t(m) * ldc, 3);
  if (beta == T(0)) std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
  const auto before = c;
  cpu::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const T got = c[size_t(i) * ldc + j];
      if (j >= n) {  // padding: untouched
        EXPECT_TRUE(std::isnan(got) ? std::isnan(before[size_t(i) * ldc + j]) : got == before[size_t(i) * ldc + j]);
        continue;
      }
      long double sum = 0;
      for (int p = 0; p < k; ++p) {
        const long double x = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
        const long double y = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
        sum += x * y;
      }
      const long double want = alpha * sum + (beta == T(0) ? 0.0L : beta * (long double)before[size_t(i) * ldc + j]);
      const double tolerance = (sizeof(T) == 4 ? 1e-5 : 1e-13) * (1 + k);
      ASSERT_NEAR(double(got), double(want), tolerance)
          << "trans_a " << ta << " trans_b " << tb << " m " << m << " n " << n << " k " << k << " at (" << i << ", "
          << j << ")";
    }
  }
}

template <class T>
class Gemm : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Gemm, Types);

TYPED_TEST(Gemm, MatchesADirectSum) {
  using T = TypeParam;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      check_gemm<T>(ta, tb, 7, 5, 9, T(1), T(0));
      check_gemm<T>(ta, tb, 7, 5, 9, T(0.5), T(1));
      check_gemm<T>(ta, tb, 33, 17, 65, T(-1.5), T(0.25));
      check_gemm<T>(ta, tb, 1, 1, 1, T(2), T(0));
    }
  }
}

TYPED_TEST(Gemm, EmptyInnerDimensionScalesC) {
  using T = TypeParam;
  check_gemm<T>(false, false, 4, 3, 0, T(1), T(0.5));
  check_gemm<T>(false, true, 4, 3, 0, T(1), T(0));
}

}  // namespace
}  // namespace kl
