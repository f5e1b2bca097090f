// The CPU's flash-style attention (src/kernels/cpu/attention.cpp) against the textbook full-matrix
// computation written here: S = Q K^T / sqrt(hs) masked to j <= i, P = softmax(S), O = P V, and its
// backward pass through P. In fp64, over lengths that end inside a tile and cross the forward
// pass's key tiles, and with one to three heads. Then the memory: no T x T matrix at T = 2048.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "models/backend.h"
#include "models/block_impl.h"
#include "src/kernels/cpu/ops.h"
#include "tests/unit/gradcheck.h"

namespace kl {
namespace {

using test::random_vector;

struct Reference {
  std::vector<double> out, lse, dqkv;
};

// The full-matrix attention of every (b, h), forward and backward, in plain loops.
Reference full_matrix_attention(const std::vector<double>& qkv, const std::vector<double>& dout, int B, int T, int C,
                                int NH) {
  const int hs = C / NH, ld = 3 * C;
  const double scale = 1.0 / std::sqrt(double(hs));
  Reference r{std::vector<double>(size_t(B) * T * C), std::vector<double>(size_t(B) * NH * T),
              std::vector<double>(qkv.size(), 0.0)};
  std::vector<double> p(size_t(T) * T), dp(size_t(T) * T);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      auto q = [&](int t, int d) { return qkv[(size_t(b) * T + t) * ld + h * hs + d]; };
      auto k = [&](int t, int d) { return qkv[(size_t(b) * T + t) * ld + C + h * hs + d]; };
      auto v = [&](int t, int d) { return qkv[(size_t(b) * T + t) * ld + 2 * C + h * hs + d]; };
      auto dy = [&](int t, int d) { return dout[(size_t(b) * T + t) * C + h * hs + d]; };
      auto grad = [&](int t, int part, int d) -> double& {
        return r.dqkv[(size_t(b) * T + t) * ld + part * C + h * hs + d];
      };
      for (int i = 0; i < T; ++i) {
        double max = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          double s = 0;
          for (int d = 0; d < hs; ++d) s += q(i, d) * k(j, d);
          p[size_t(i) * T + j] = s * scale;
          max = std::max(max, s * scale);
        }
        double sum = 0;
        for (int j = 0; j <= i; ++j) sum += std::exp(p[size_t(i) * T + j] - max);
        r.lse[(size_t(b) * NH + h) * T + i] = max + std::log(sum);
        for (int j = 0; j < T; ++j) p[size_t(i) * T + j] = j <= i ? std::exp(p[size_t(i) * T + j] - max) / sum : 0.0;
        for (int d = 0; d < hs; ++d) {
          double y = 0;
          for (int j = 0; j <= i; ++j) y += p[size_t(i) * T + j] * v(j, d);
          r.out[(size_t(b) * T + i) * C + h * hs + d] = y;
        }
      }
      for (int i = 0; i < T; ++i) {  // dP = dO V^T, dS = P (dP - rowsum(P dP))
        double dot = 0;
        for (int j = 0; j <= i; ++j) {
          double g = 0;
          for (int d = 0; d < hs; ++d) g += dy(i, d) * v(j, d);
          dp[size_t(i) * T + j] = g;
          dot += p[size_t(i) * T + j] * g;
        }
        for (int j = 0; j <= i; ++j) dp[size_t(i) * T + j] = p[size_t(i) * T + j] * (dp[size_t(i) * T + j] - dot);
      }
      for (int i = 0; i < T; ++i) {
        for (int j = 0; j <= i; ++j) {
          const double pij = p[size_t(i) * T + j], ds = dp[size_t(i) * T + j];
          for (int d = 0; d < hs; ++d) {
            grad(j, 2, d) += pij * dy(i, d);           // dV = P^T dO
            grad(i, 0, d) += ds * k(j, d) * scale;     // dQ = dS K / sqrt(hs)
            grad(j, 1, d) += ds * q(i, d) * scale;     // dK = dS^T Q / sqrt(hs)
          }
        }
      }
    }
  }
  return r;
}

void expect_near_all(const std::string& what, const std::vector<double>& got, const std::vector<double>& want,
                     double tol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::abs(got[i] - want[i]) > tol * (1.0 + std::abs(want[i])) && ++failures <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs full-matrix " << want[i];
    }
  }
}

TEST(FlashAttention, MatchesTheFullMatrixComputation) {
  struct Case {
    int B, T, C, NH;
  };
  // Tiles: forward 32 queries x 128 keys, backward 128 queries x 32 keys.
  for (const Case& k : {Case{2, 1, 4, 1}, Case{2, 5, 6, 2}, Case{1, 32, 6, 3}, Case{1, 33, 4, 2}, Case{2, 127, 6, 3},
                        Case{1, 128, 4, 1}, Case{1, 129, 4, 2}, Case{1, 200, 6, 3}, Case{1, 300, 4, 2}}) {
    SCOPED_TRACE("B=" + std::to_string(k.B) + " T=" + std::to_string(k.T) + " NH=" + std::to_string(k.NH));
    // Scores of several units, so that the running maximum moves between tiles.
    const auto qkv = random_vector(size_t(k.B) * k.T * 3 * k.C, 100 + k.T, 2.0);
    const auto dout = random_vector(size_t(k.B) * k.T * k.C, 200 + k.T);
    const Reference want = full_matrix_attention(qkv, dout, k.B, k.T, k.C, k.NH);
    std::vector<double> out(want.out.size()), lse(want.lse.size()), dqkv(qkv.size(), 7.0);  // 7: assigned, not added
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), k.B, k.T, k.C, k.NH);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), k.B, k.T, k.C, k.NH);
    expect_near_all("out", out, want.out, 1e-12);
    expect_near_all("lse", lse, want.lse, 1e-12);
    expect_near_all("dqkv", dqkv, want.dqkv, 1e-11);
  }
}

// Two runs with the same threads give the same bits (each (b, h) summed by one thread in order).
TEST(FlashAttention, IsDeterministic) {
  const int B = 2, T = 150, C = 32, NH = 4;
  std::vector<float> qkv(size_t(B) * T * 3 * C), dout(size_t(B) * T * C);
  const auto a = random_vector(qkv.size(), 5), g = random_vector(dout.size(), 6);
  std::copy(a.begin(), a.end(), qkv.begin());
  std::copy(g.begin(), g.end(), dout.begin());
  auto run = [&] {
    std::vector<float> out(dout.size()), lse(size_t(B) * NH * T), dqkv(qkv.size());
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, C, NH);
    out.insert(out.end(), dqkv.begin(), dqkv.end());
    return out;
  };
  EXPECT_EQ(run(), run());
}

// At T = 2048 a block's saved tensors and scratch grow linearly in T on the CPU (a T^2 term would
// break the doubling), and attention keeps B NH T elements; the kernel runs at that length in fp32,
// its rows matching the full-matrix softmax computed one row at a time.
TEST(FlashAttention, NoSquareMatrixAtT2048) {
  using Be = CpuBackend<float>;
  const int B = 1, T = 2048, C = 16, NH = 2;
  EXPECT_EQ(Be::attention_stash_elems(B, T, NH), int64_t{B} * NH * T);
  EXPECT_EQ(Be::attention_scratch_elems(B, T, NH), 0);
  const BlockShape half{B, T / 2, C, NH, 4 * C}, full{B, T, C, NH, 4 * C};
  EXPECT_EQ(BlockActivations<Be>::size(full).act, 2 * BlockActivations<Be>::size(half).act);
  EXPECT_EQ(BlockScratch<Be>::size(full).act, 2 * BlockScratch<Be>::size(half).act);

  const auto a = random_vector(size_t(B) * T * 3 * C, 9);
  std::vector<float> qkv(a.begin(), a.end()), out(size_t(B) * T * C), lse(size_t(B) * NH * T);
  std::vector<float> dout(out.size(), 1.0f), dqkv(qkv.size());
  cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, C, NH);
  const int hs = C / NH;
  for (const int i : {0, 1000, T - 1}) {
    for (int h = 0; h < NH; ++h) {
      std::vector<double> s(size_t(i) + 1);
      double max = -INFINITY, sum = 0;
      for (int j = 0; j <= i; ++j) {
        for (int d = 0; d < hs; ++d) s[size_t(j)] += a[size_t(i) * 3 * C + h * hs + d] * a[size_t(j) * 3 * C + C + h * hs + d];
        s[size_t(j)] /= std::sqrt(double(hs));
        max = std::max(max, s[size_t(j)]);
      }
      for (int j = 0; j <= i; ++j) sum += std::exp(s[size_t(j)] - max);
      EXPECT_NEAR(lse[size_t(h) * T + i], max + std::log(sum), 1e-4 * (1 + std::abs(max)));
      for (int d = 0; d < hs; ++d) {
        double y = 0;
        for (int j = 0; j <= i; ++j) y += std::exp(s[size_t(j)] - max) / sum * a[size_t(j) * 3 * C + 2 * C + h * hs + d];
        EXPECT_NEAR(out[size_t(i) * C + h * hs + d], y, 1e-4) << "row " << i << " head " << h;
      }
    }
  }
  // dO = 1 everywhere: D_i = rowsum(O_i), and the value gradient of a position j sums P over the
  // queries that see it, so summed over positions it is T per channel.
  for (int c = 0; c < C; ++c) {
    double sum = 0;
    for (int t = 0; t < T; ++t) sum += dqkv[size_t(t) * 3 * C + 2 * C + c];
    EXPECT_NEAR(sum, T, 1e-2) << "channel " << c;
  }
}

}  // namespace
}  // namespace kl
