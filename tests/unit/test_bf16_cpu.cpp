// bf16 products on the CPU (run.precision = bf16, src/kernels/cpu/onednn.h): the product against a
// long-double sum of the bf16-rounded operands (the fp32 sums only may differ), the Linear layer
// against its fp32 self within bf16's tolerance, bitwise repeatability, and the startup check that
// names a missing CPU feature.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <fstream>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/kernels/cpu/onednn.h"
#include "src/kernels/cpu/ops.h"
#include "src/pipeline/worker.h"
#include "src/util/error.h"
#include "src/util/rng.h"

namespace kl {
namespace {

std::vector<float> values(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(int(rng::mix64(seed * 1000003 + i) % 2001) - 1000) / 997.0f;
  return v;
}

bool cpu_has_bf16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string word;
  while (cpuinfo >> word) {
    if (word == "avx512_bf16") return true;
  }
  return false;
}

#define KL_SKIP_WITHOUT_BF16()                                                      \
  if (!cpu::bf16_products_unavailable().empty()) GTEST_SKIP() << cpu::bf16_products_unavailable()

TEST(Bf16Cpu, AvailabilityFollowsTheCpuFlag) {
  const std::string why = cpu::bf16_products_unavailable();
  if (!cpu::have_onednn()) {
    EXPECT_NE(why.find("KL_ONEDNN=OFF"), std::string::npos) << why;
  } else if (cpu_has_bf16()) {
    EXPECT_EQ(why, "");
  } else {
    EXPECT_NE(why.find("avx512"), std::string::npos) << why;
  }
  // Training refuses it exactly where it is unavailable, with that reason.
  Config c;
  c.run.precision = Precision::kBf16;
  if (why.empty()) {
    EXPECT_NO_THROW(check_backend(c));
  } else {
    try {
      check_backend(c);
      ADD_FAILURE() << "bf16 accepted without " << why;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
}

TEST(Bf16Cpu, RoundsToNearestEven) {
  EXPECT_EQ(cpu::round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(cpu::round_to_bf16(1.0f + 1.0f / 256), 1.0f);               // halfway: to even (1.0)
  EXPECT_EQ(cpu::round_to_bf16(1.0f + 3.0f / 256), 1.0f + 4.0f / 256);  // halfway: to even (1 + 2^-6)
  EXPECT_EQ(cpu::round_to_bf16(1.0f + 1.0f / 128 + 1.0f / 1024), 1.0f + 1.0f / 128);
  EXPECT_EQ(cpu::round_to_bf16(-3.0f), -3.0f);
}

// A NaN operand must stay a NaN (a diverging run must show it), whatever its payload: the rounding
// carry would turn 0xffffffff into -0 and 0x7f800001 into +infinity.
TEST(Bf16Cpu, KeepsNansAndInfinities) {
  const auto from_bits = [](uint32_t u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
  };
  for (const uint32_t bits : {0x7fc00000u, 0xffc00000u, 0x7fff8000u, 0xffffffffu, 0x7f800001u, 0xff80ffffu}) {
    const float y = cpu::round_to_bf16(from_bits(bits));
    EXPECT_TRUE(std::isnan(y)) << std::hex << bits << " became " << y;
    EXPECT_EQ(std::signbit(y), (bits >> 31) != 0) << std::hex << bits;
  }
  EXPECT_EQ(cpu::round_to_bf16(from_bits(0x7f800000u)), std::numeric_limits<float>::infinity());
  EXPECT_EQ(cpu::round_to_bf16(-std::numeric_limits<float>::infinity()), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(cpu::round_to_bf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
}

// Every transposition, leading dimensions wider than the rows, beta 0 (C never read) and 1.
TEST(Bf16Cpu, GemmSumsTheRoundedOperandsInFp32) {
  KL_SKIP_WITHOUT_BF16();
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (float beta : {0.0f, 1.0f}) {
        const int m = 37, n = 29, k = 300;
        const int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
        const int lda = a_cols + 3, ldb = b_cols + 2, ldc = n + 1;
        const auto a = values(size_t(a_rows) * lda, 1), b = values(size_t(b_rows) * ldb, 2);
        auto c = values(size_t(m) * ldc, 3);
        if (beta == 0.0f) std::fill(c.begin(), c.end(), NAN);
        const auto before = c;
        cpu::bf16_gemm(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        double worst_rounded = 0, worst_exact = 0;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            long double rounded = 0, exact = 0;
            for (int p = 0; p < k; ++p) {
              const float x = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
              const float y = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
              rounded += (long double)cpu::round_to_bf16(x) * cpu::round_to_bf16(y);
              exact += (long double)x * y;
            }
            const long double c0 = beta == 0.0f ? 0.0L : before[size_t(i) * ldc + j];
            const double got = c[size_t(i) * ldc + j];
            worst_rounded = std::max(worst_rounded, std::fabs(got - double(rounded + c0)));
            worst_exact = std::max(worst_exact, std::fabs(got - double(exact + c0)));
          }
          EXPECT_TRUE(std::isnan(c[size_t(i) * ldc + n]) == (beta == 0.0f)) << "padding written";
        }
        // |x y| <= 1: fp32 sums of 300 terms stay within 1e-4; bf16 operands (8 bits) move a sum of
        // 300 such products by about 2^-8 sqrt(300) ~ 0.07.
        EXPECT_LT(worst_rounded, 1e-4) << "ta " << ta << " tb " << tb << " beta " << beta;
        EXPECT_LT(worst_exact, 0.2) << "ta " << ta << " tb " << tb << " beta " << beta;
        EXPECT_GT(worst_exact, 1e-4) << "the operands were not rounded to bf16";
      }
    }
  }
}

// The Linear layer with bf16 products against fp32: within bf16's relative tolerance, and the same
// bits on a second run.
TEST(Bf16Cpu, LinearWithinBf16ToleranceAndRepeatable) {
  KL_SKIP_WITHOUT_BF16();
  const int N = 256, I = 128, O = 96;
  const auto inp = values(size_t(N) * I, 4), w = values(size_t(O) * I, 5), b = values(O, 6), dout = values(size_t(N) * O, 7);
  auto run = [&](cpu::Products products) {
    std::vector<float> out(size_t(N) * O), dinp(size_t(N) * I), dw(size_t(O) * I, 0.5f), db(O, 0.0f);
    cpu::linear_forward(out.data(), inp.data(), w.data(), b.data(), N, I, O, products);
    cpu::linear_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, I, O, products);
    return std::vector<std::vector<float>>{out, dinp, dw, db};
  };
  const auto exact = run(cpu::Products::kExact), bf16 = run(cpu::Products::kBf16), again = run(cpu::Products::kBf16);
  const char* names[] = {"out", "dinp", "dweight", "dbias"};
  for (size_t t = 0; t < exact.size(); ++t) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < exact[t].size(); ++i) {
      worst = std::max(worst, double(std::fabs(exact[t][i] - bf16[t][i])));
      scale = std::max(scale, double(std::fabs(exact[t][i])));
      ASSERT_EQ(bf16[t][i], again[t][i]) << names[t] << " differs between two runs at " << i;
    }
    EXPECT_LT(worst / scale, 2e-2) << names[t];  // a few bf16 ulps (2^-8) of the largest value
  }
}

// bf16_gemm's a_unchanged: the staged copy of A is used again only for the same matrix. The weight
// gradient that linear_backward computes after the input gradient (reusing dY's bf16 copy) has the
// bits of one computed alone (dinp null: dY staged afresh).
TEST(Bf16Cpu, ReusesTheStagedOperandOnlyForTheSameMatrix) {
  KL_SKIP_WITHOUT_BF16();
  const int m = 33, n = 20, k = 70;
  auto a = values(size_t(m) * k, 8);
  const auto b = values(size_t(k) * n, 9);
  auto fresh = [&](const std::vector<float>& from, int rows) {  // A copied elsewhere: staged anew
    const std::vector<float> copy(from.begin(), from.begin() + size_t(rows) * k);
    std::vector<float> c(size_t(rows) * n);
    cpu::bf16_gemm(false, false, rows, n, k, copy.data(), k, b.data(), n, 0.0f, c.data(), n);
    return c;
  };
  std::vector<float> c(size_t(m) * n);
  cpu::bf16_gemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  // A changed in place and not promised unchanged: staged again.
  for (float& x : a) x = -2.0f * x;
  cpu::bf16_gemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  EXPECT_EQ(c, fresh(a, m));
  // Promised unchanged, the same matrix: the same result from the kept copy.
  std::fill(c.begin(), c.end(), 0.0f);
  cpu::bf16_gemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.0f, c.data(), n, true);
  EXPECT_EQ(c, fresh(a, m));
  // Promised unchanged but another matrix (A without its first row: another pointer): staged again.
  cpu::bf16_gemm(false, false, m - 1, n, k, a.data() + k, k, b.data(), n, 0.0f, c.data(), n, true);
  const std::vector<float> rest(a.begin() + k, a.end());
  EXPECT_EQ(std::vector<float>(c.begin(), c.begin() + size_t(m - 1) * n), fresh(rest, m - 1));

  const int N = 64, I = 48, O = 40;
  const auto inp = values(size_t(N) * I, 10), w = values(size_t(O) * I, 11), dout = values(size_t(N) * O, 12);
  std::vector<float> dinp(size_t(N) * I), dw_both(size_t(O) * I, 0.25f), dw_alone = dw_both;
  cpu::linear_backward<float>(dinp.data(), dw_both.data(), nullptr, dout.data(), inp.data(), w.data(), N, I, O,
                       cpu::Products::kBf16);
  cpu::linear_backward<float>(nullptr, dw_alone.data(), nullptr, dout.data(), inp.data(), w.data(), N, I, O,
                              cpu::Products::kBf16);
  EXPECT_EQ(dw_both, dw_alone);
}

}  // namespace
}  // namespace kl
