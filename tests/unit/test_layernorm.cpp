// The float LayerNorm the training path runs (simd reductions per row, parameter-gradient columns
// summed in blocks of 64 per thread): against the formula evaluated in double, and bitwise the same
// under 1-3 threads. C = 150 leaves remainders after every vector width and after the column blocks,
// and 3 threads split it unevenly.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "src/kernels/cpu/ops.h"
#include "tests/unit/gradcheck.h"

namespace kl {
namespace {

using test::random_vector;
using test::to_float;
using test::with_threads;

TEST(LayerNormCpu, FloatMatchesDoubleFormulaAndThreadCount) {
  const int N = 13, C = 150;
  const auto x = random_vector(N * C, 81, 2.0), w = random_vector(C, 82), b = random_vector(C, 83),
             dy = random_vector(N * C, 84);
  // The reference: the formula in double, written out here rather than through the kernel.
  std::vector<double> want_out(N * C), want_dx(N * C), want_dw(C, 0.0), want_db(C, 0.0);
  for (int n = 0; n < N; ++n) {
    const double* xr = &x[n * C];
    const double* dyr = &dy[n * C];
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += xr[c] / C;
    for (int c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m) / C;
    const double s = 1 / std::sqrt(v + 1e-5);
    double g_mean = 0, g_norm_mean = 0;
    for (int c = 0; c < C; ++c) {
      const double norm = (xr[c] - m) * s;
      want_out[n * C + c] = norm * w[c] + b[c];
      g_mean += dyr[c] * w[c] / C;
      g_norm_mean += dyr[c] * w[c] * norm / C;
      want_dw[c] += dyr[c] * norm;
      want_db[c] += dyr[c];
    }
    for (int c = 0; c < C; ++c) {
      want_dx[n * C + c] = (dyr[c] * w[c] - g_mean - (xr[c] - m) * s * g_norm_mean) * s;
    }
  }
  const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), dyf = to_float(dy);
  std::vector<float> first_out, first_dx, first_dw, first_db;
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    with_threads(threads, [&] {
      std::vector<float> out(N * C), mean(N), rstd(N), dx(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
      cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), xf.data(), wf.data(), bf.data(), N, C);
      cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dyf.data(), xf.data(), wf.data(), mean.data(),
                              rstd.data(), N, C);
      auto expect_close = [](const std::vector<float>& got, const std::vector<double>& want, const char* what) {
        for (size_t i = 0; i < want.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], 2e-5 * std::max(1.0, std::abs(want[i]))) << what << " " << i;
        }
      };
      expect_close(out, want_out, "out");
      expect_close(dx, want_dx, "dinp");
      expect_close(dw, want_dw, "dweight");
      expect_close(db, want_db, "dbias");
      // Without a bias gradient: the same weight gradient, the input gradient untouched.
      std::vector<float> dw_only(C, 0.0f);
      cpu::layernorm_backward<float>(nullptr, dw_only.data(), nullptr, dyf.data(), xf.data(), wf.data(),
                                     mean.data(), rstd.data(), N, C);
      EXPECT_EQ(dw_only, dw);
      if (first_out.empty()) first_out = out, first_dx = dx, first_dw = dw, first_db = db;
      EXPECT_EQ(out, first_out);
      EXPECT_EQ(dx, first_dx);
      EXPECT_EQ(dw, first_dw);
      EXPECT_EQ(db, first_db);
    });
  }
}

}  // namespace
}  // namespace kl
