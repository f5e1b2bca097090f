// Every op's backward against central finite differences of its forward, in double precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/kernels/cpu/ops.h"
#include "tests/unit/gradcheck.h"

namespace kl {
namespace {

using test::expect_gradient;
using test::random_vector;
using test::weighted_sum;

TEST(OpsGrad, Linear) {
  const int N = 5, I = 7, O = 6;
  auto inp = random_vector(N * I, 1), w = random_vector(O * I, 2), b = random_vector(O, 3);
  const auto dout = random_vector(N * O, 4);
  std::vector<double> out(N * O), dinp(N * I), dw(O * I, 0.0), db(O, 0.0);
  auto loss = [&] {
    cpu::linear_forward(out.data(), inp.data(), w.data(), b.data(), N, I, O);
    return weighted_sum(out, dout);
  };
  cpu::linear_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, I, O);
  expect_gradient("linear dinp", inp.data(), dinp.data(), N * I, loss);
  expect_gradient("linear dweight", w.data(), dw.data(), O * I, loss);
  expect_gradient("linear dbias", b.data(), db.data(), O, loss);
}

TEST(OpsGrad, LinearAccumulatesParameterGradients) {
  const int N = 3, I = 4, O = 2;
  auto inp = random_vector(N * I, 5), w = random_vector(O * I, 6);
  const auto dout = random_vector(N * O, 7);
  std::vector<double> dinp(N * I), dw_once(O * I, 0.0), db_once(O, 0.0);
  cpu::linear_backward(dinp.data(), dw_once.data(), db_once.data(), dout.data(), inp.data(), w.data(), N, I, O);
  std::vector<double> dw_twice(O * I, 0.0), db_twice(O, 0.0);
  for (int k = 0; k < 2; ++k) {
    cpu::linear_backward(dinp.data(), dw_twice.data(), db_twice.data(), dout.data(), inp.data(), w.data(), N, I, O);
  }
  for (int i = 0; i < O * I; ++i) EXPECT_NEAR(dw_twice[i], 2 * dw_once[i], 1e-12);
  for (int i = 0; i < O; ++i) EXPECT_NEAR(db_twice[i], 2 * db_once[i], 1e-12);
}

TEST(OpsGrad, LayerNorm) {
  const int N = 4, C = 9;
  auto inp = random_vector(N * C, 11, 2.0), w = random_vector(C, 12), b = random_vector(C, 13);
  const auto dout = random_vector(N * C, 14);
  std::vector<double> out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
    return weighted_sum(out, dout);
  };
  loss();
  // dinp accumulates: start from a known offset and subtract it afterwards.
  std::vector<double> dinp(N * C, 0.5), dw(C, 0.0), db(C, 0.0);
  cpu::layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(),
                          mean.data(), rstd.data(), N, C);
  for (auto& g : dinp) g -= 0.5;
  expect_gradient("layernorm dinp", inp.data(), dinp.data(), N * C, loss);
  expect_gradient("layernorm dweight", w.data(), dw.data(), C, loss);
  expect_gradient("layernorm dbias", b.data(), db.data(), C, loss);
}

TEST(OpsGrad, LayerNormMatchesFormula) {
  const int N = 2, C = 5;
  auto inp = random_vector(N * C, 15);
  std::vector<double> w(C, 1.0), b(C, 0.0), out(N * C), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
  for (int n = 0; n < N; ++n) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += inp[n * C + c] / C;
    for (int c = 0; c < C; ++c) v += (inp[n * C + c] - m) * (inp[n * C + c] - m) / C;
    for (int c = 0; c < C; ++c) {
      EXPECT_NEAR(out[n * C + c], (inp[n * C + c] - m) / std::sqrt(v + 1e-5), 1e-12);
    }
  }
}

void check_attention_gradient(int B, int T, int C, int NH, uint32_t seed) {
  auto qkv = random_vector(B * T * 3 * C, seed);
  const auto dout = random_vector(B * T * C, seed + 1);
  std::vector<double> out(B * T * C), lse(B * NH * T), dqkv(qkv.size());
  auto loss = [&] {
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
    return weighted_sum(out, dout);
  };
  loss();
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, C, NH);
  expect_gradient("attention dqkv", qkv.data(), dqkv.data(), static_cast<int64_t>(qkv.size()), loss);
}

TEST(OpsGrad, Attention) { check_attention_gradient(2, 5, 6, 2, 21); }

// T = 70 crosses the kernel's tiles of 32 positions, including a partial last one.
TEST(OpsGrad, AttentionAcrossCausalBlocks) { check_attention_gradient(1, 70, 4, 2, 24); }

// T = 150 crosses the forward pass's key tile of 128 positions: the online softmax rescales.
TEST(OpsGrad, AttentionAcrossKeyTiles) { check_attention_gradient(1, 150, 2, 1, 25); }

TEST(OpsGrad, AttentionIsCausalAndNormalised) {
  const int B = 1, T = 6, C = 4, NH = 2;
  auto qkv = random_vector(B * T * 3 * C, 23);
  std::vector<double> out(B * T * C), lse(B * NH * T);
  cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
  const auto before = out;
  // Changing the last position's keys and values must not change any earlier output.
  for (int c = C; c < 3 * C; ++c) qkv[(T - 1) * 3 * C + c] += 1.0;
  cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
  for (int i = 0; i < (T - 1) * C; ++i) EXPECT_DOUBLE_EQ(out[i], before[i]);
  // With every value 1, each output is the sum of its row's probabilities.
  for (int t = 0; t < T; ++t) std::fill_n(qkv.begin() + t * 3 * C + 2 * C, C, 1.0);
  cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
  for (const double y : out) EXPECT_NEAR(y, 1.0, 1e-12);
}

TEST(OpsGrad, Gelu) {
  const int n = 40;
  auto inp = random_vector(n, 31, 2.0);
  const auto dout = random_vector(n, 32);
  std::vector<double> out(n), dinp(n);
  auto loss = [&] {
    cpu::gelu_forward(out.data(), inp.data(), n);
    return weighted_sum(out, dout);
  };
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), n);
  expect_gradient("gelu dinp", inp.data(), dinp.data(), n, loss);
  // The exact erf form, not the tanh approximation: GELU(1) = 0.5 (1 + erf(1/sqrt 2)).
  double x = 1.0, y = 0;
  cpu::gelu_forward(&y, &x, 1);
  EXPECT_NEAR(y, 0.8413447460685429, 1e-15);
}

// Also with padded rows (model.vocab_padded): Vp = 10 columns, the vocabulary their first 7. The
// padded columns are outside the loss, so their finite-difference gradient is 0, as the backward's.
TEST(OpsGrad, SoftmaxCrossEntropy) {
  for (const int Vp : {7, 10}) {
    const int N = 4, V = 7;
    auto logits = random_vector(N * Vp, 41, 2.0);
    const std::vector<int32_t> targets = {0, 6, 3, 3};
    std::vector<double> losses(N), probs(N * Vp), dlogits(N * Vp, 1.0);
    const double dloss = 0.7;
    auto loss = [&] {
      cpu::softmax_xent_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V, Vp);
      double s = 0;
      for (double l : losses) s += l;
      return s * dloss;
    };
    loss();
    cpu::softmax_xent_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V, Vp);
    expect_gradient("softmax_xent dlogits", logits.data(), dlogits.data(), N * Vp, loss);
    loss();  // the losses of the unperturbed logits again
    for (int n = 0; n < N; ++n) {
      double z = 0;  // the loss is -log softmax[target] over the true vocabulary, computed the long way
      for (int v = 0; v < V; ++v) z += std::exp(logits[n * Vp + v]);
      EXPECT_NEAR(losses[n], std::log(z) - logits[n * Vp + targets[n]], 1e-12);
      for (int v = V; v < Vp; ++v) EXPECT_EQ(dlogits[n * Vp + v], 0.0);
    }
  }
}

TEST(OpsGrad, Embedding) {
  const int B = 2, T = 4, C = 3, V = 5;
  auto wte = random_vector(V * C, 51), wpe = random_vector(T * C, 52);
  const std::vector<int32_t> tokens = {1, 4, 1, 0, 4, 4, 2, 1};  // repeats on purpose
  const auto dout = random_vector(B * T * C, 53);
  std::vector<double> out(B * T * C), dwte(V * C, 0.0), dwpe(T * C, 0.0);
  auto loss = [&] {
    cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return weighted_sum(out, dout);
  };
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  expect_gradient("embedding dwte", wte.data(), dwte.data(), V * C, loss);
  expect_gradient("embedding dwpe", wpe.data(), dwpe.data(), T * C, loss);
}

TEST(OpsGrad, Dropout) {
  const int B = 3;
  const int64_t row = 50;
  auto inp = random_vector(B * row, 61);
  const auto dout = random_vector(B * row, 62);
  const cpu::DropoutKey key{7, 3, 10, 2};
  std::vector<double> out(B * row), dinp(B * row);
  auto loss = [&] {
    cpu::dropout_forward(out.data(), inp.data(), B, row, 0.3, key);
    return weighted_sum(out, dout);
  };
  cpu::dropout_backward(dinp.data(), dout.data(), B, row, 0.3, key);
  expect_gradient("dropout dinp", inp.data(), dinp.data(), B * row, loss);
}

TEST(Dropout, KeepRateScaleAndIndependenceFromBatching) {
  const int B = 8;
  const int64_t row = 4096;
  const double p = 0.1;
  std::vector<float> ones(B * row, 1.0f), out(B * row);
  const cpu::DropoutKey key{42, 5, 0, 9};
  cpu::dropout_forward(out.data(), ones.data(), B, row, p, key);
  int64_t kept = 0;
  for (float y : out) {
    if (y != 0.0f) {
      ++kept;
      EXPECT_FLOAT_EQ(y, static_cast<float>(1.0 / (1.0 - p)));
    }
  }
  const double rate = double(kept) / out.size();
  EXPECT_NEAR(rate, 1.0 - p, 0.01);  // 32768 draws: the standard deviation is 0.0017
  // Rows 5..7 computed as their own batch (first_sample = 5) get the same masks.
  std::vector<float> part(3 * row);
  cpu::DropoutKey later = key;
  later.first_sample = 5;
  cpu::dropout_forward(part.data(), ones.data(), 3, row, p, later);
  for (int64_t i = 0; i < 3 * row; ++i) ASSERT_EQ(part[i], out[5 * row + i]);
  // Another step or site gives another mask.
  cpu::DropoutKey other = key;
  other.step = 6;
  std::vector<float> out2(B * row);
  cpu::dropout_forward(out2.data(), ones.data(), B, row, p, other);
  EXPECT_NE(out, out2);
}

TEST(AdamW, MatchesTheFormula) {
  const int n = 6;
  auto param = random_vector(n, 71), grad = random_vector(n, 72);
  std::vector<double> m(n, 0.0), v(n, 0.0);
  auto ref = param;
  std::vector<double> rm(n, 0.0), rv(n, 0.0);
  const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  for (int step = 1; step <= 3; ++step) {
    cpu::adamw_update(param.data(), grad.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
    for (int i = 0; i < n; ++i) {
      rm[i] = b1 * rm[i] + (1 - b1) * grad[i];
      rv[i] = b2 * rv[i] + (1 - b2) * grad[i] * grad[i];
      const double mhat = rm[i] / (1 - std::pow(b1, step)), vhat = rv[i] / (1 - std::pow(b2, step));
      ref[i] = ref[i] - lr * wd * ref[i] - lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(param[i], ref[i], 1e-12);
}

TEST(Reductions, SumSquaresIsDeterministicAndRight) {
  auto x = random_vector(10001, 81);
  double ref = 0;
  for (double v : x) ref += v * v;
  EXPECT_NEAR(cpu::sum_squares(x.data(), 10001), ref, 1e-9 * ref);
  EXPECT_EQ(cpu::sum_squares(x.data(), 10001), cpu::sum_squares(x.data(), 10001));
}

}  // namespace
}  // namespace kl

namespace kl {
namespace {

// The float GELU uses vectorisable approximations of erf and exp: bound their error against the
// double (libm) version over the whole range that matters, including the saturated tails.
TEST(Gelu, FloatApproximationMatchesDouble) {
  const int n = 200001;
  std::vector<float> xf(n), yf(n), gf(n), ones(n, 1.0f);
  std::vector<double> xd(n), yd(n), gd(n), onesd(n, 1.0);
  for (int i = 0; i < n; ++i) {
    xd[i] = -12.0 + 24.0 * i / (n - 1);
    xf[i] = static_cast<float>(xd[i]);
    xd[i] = xf[i];  // both on the same float inputs
  }
  cpu::gelu_forward(yf.data(), xf.data(), n);
  cpu::gelu_forward(yd.data(), xd.data(), n);
  cpu::gelu_backward(gf.data(), xf.data(), ones.data(), n);
  cpu::gelu_backward(gd.data(), xd.data(), onesd.data(), n);
  double worst_value = 0, worst_slope = 0;
  for (int i = 0; i < n; ++i) {
    worst_value = std::max(worst_value, std::abs(yf[i] - yd[i]) / std::max(1.0, std::abs(yd[i])));
    worst_slope = std::max(worst_slope, std::abs(gf[i] - gd[i]));
  }
  EXPECT_LT(worst_value, 1e-6);
  EXPECT_LT(worst_slope, 1e-6);
  EXPECT_TRUE(std::isfinite(yf[0]) && std::abs(yf[0]) < 1e-30) << yf[0];  // the far tail: tiny, finite
}

}  // namespace
}  // namespace kl
