// bf16 on the CPU (run.precision = bf16): the products (src/kernels/cpu/onednn.h) against a
// long-double sum of the bf16-rounded operands (the fp32 sums only may differ), the Linear layer
// against its fp32 self within bf16's tolerance, bitwise repeatability, and the startup check that
// names a missing CPU feature. Then the bf16 activations (CpuBf16Backend): each kernel on bf16
// against its float self on the same values, rounded once; and the whole model, every residual
// variant, against fp32 (the walk's Act != Acc paths, which the GPU's bf16 backend takes too).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <fstream>
#include <string>
#include <vector>

#include "models/backend.h"
#include "src/config/config.h"
#include "src/kernels/cpu/onednn.h"
#include "src/kernels/cpu/ops.h"
#include "src/pipeline/worker.h"
#include "src/util/error.h"
#include "src/util/rng.h"
#include "tests/unit/gradcheck.h"
#include "tests/unit/whole_model.h"

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

// Attention's fp32 log-sum-exp sits among the bf16 activations, aligned only when the widths are
// even: an odd d_model or d_ff is refused at startup, naming both.
TEST(Bf16Cpu, RefusesOddWidths) {
  KL_SKIP_WITHOUT_BF16();
  for (const auto& [d_model, d_ff] : {std::pair{9, 0}, std::pair{8, 33}}) {
    Config c;
    c.run.precision = Precision::kBf16;
    c.model.d_model = d_model;
    c.model.heads = 1;
    c.model.d_ff = d_ff;
    try {
      check_backend(c);
      ADD_FAILURE() << "d_model " << d_model << " d_ff " << d_ff << " accepted";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("even model.d_model and model.d_ff (got " + std::to_string(d_model) + " and " +
                                           std::to_string(c.model.ff_width()) + ")"),
                std::string::npos)
          << e.what();
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

// bf16_matmul with an fp32 C: every transposition, leading dimensions wider than the rows, beta 0
// (C never read) and 1; the products of the bf16 values summed in fp32.
TEST(Bf16Cpu, MatmulSumsTheBf16OperandsInFp32) {
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
        const std::vector<cpu::bf16> a16(a.begin(), a.end()), b16(b.begin(), b.end());
        cpu::bf16_matmul(ta, tb, m, n, k, a16.data(), lda, b16.data(), ldb, nullptr, beta, c.data(), ldc);
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

// --- bf16 activations ---

std::vector<cpu::bf16> to_bf16(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<float> widen(const std::vector<cpu::bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = cpu::load(v[i]);
  return out;
}
std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = cpu::round_to_bf16(x);
  return v;
}
// The largest |a - b| relative to b's largest magnitude.
double relative_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return scale > 0 ? worst / scale : worst;
}
// a and b (b computed in float from the same values) agree up to rounding b once to bf16: within
// one bf16 unit (2^-7 of the value) of each element, plus the float kernels' own last-bit noise.
void expect_rounded_once(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int far = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > std::ldexp(std::fabs(b[i]), -8) + 1e-6f) ++far;
  }
  EXPECT_EQ(far, 0) << what << ": elements beyond half a bf16 unit of the float result";
  EXPECT_LT(relative_gap(a, b), 1.0 / 128) << what;
}

// Each element-wise kernel on bf16 is its float self on the widened values, with what it writes
// rounded once: LayerNorm, bias + GELU and GELU's backward pass, dropout, the joins, softmax.
TEST(Bf16Activations, KernelsAreTheirFloatSelvesRoundedOnce) {
  const int N = 48, C = 40, F = 64, V = 30, Vp = 32;
  const auto x = values(size_t(N) * C, 21), w16 = rounded(values(C, 22)), b16 = rounded(values(C, 23));
  const auto wb = to_bf16(w16), bb = to_bf16(b16);
  {  // LayerNorm forward (bf16 out, bf16 weight) and backward (bf16 dout): float stream and statistics
    std::vector<float> out32(size_t(N) * C), mean(N), rstd(N), mean16(N), rstd16(N);
    std::vector<cpu::bf16> out16(size_t(N) * C);
    cpu::layernorm_forward(out32.data(), mean.data(), rstd.data(), x.data(), w16.data(), b16.data(), N, C);
    cpu::layernorm_forward(out16.data(), mean16.data(), rstd16.data(), x.data(), wb.data(), bb.data(), N, C);
    expect_rounded_once(widen(out16), out32, "layernorm out");
    EXPECT_EQ(mean16, mean);
    EXPECT_EQ(rstd16, rstd);
    const auto dy16 = rounded(values(size_t(N) * C, 24));
    const auto dyb = to_bf16(dy16);
    std::vector<float> dx32(size_t(N) * C, 0.5f), dx16 = dx32, dw32(C, 0.25f), dw16 = dw32, db32(C), db16(C);
    cpu::layernorm_backward(dx32.data(), dw32.data(), db32.data(), dy16.data(), x.data(), w16.data(), mean.data(),
                            rstd.data(), N, C);
    cpu::layernorm_backward(dx16.data(), dw16.data(), db16.data(), dyb.data(), x.data(), wb.data(), mean.data(),
                            rstd.data(), N, C);
    EXPECT_LT(relative_gap(dx16, dx32), 1e-6);
    EXPECT_LT(relative_gap(dw16, dw32), 1e-6);
    EXPECT_LT(relative_gap(db16, db32), 1e-6);
  }
  {  // bias + GELU forward, GELU's backward with the bias sum, GELU alone
    const auto pre0 = rounded(values(size_t(N) * F, 25)), bias = rounded(values(F, 26));
    auto pre32 = pre0;
    std::vector<float> out32(pre0.size());
    auto pre16 = to_bf16(pre0);
    std::vector<cpu::bf16> out16(pre0.size());
    const auto biasb = to_bf16(bias);
    cpu::bias_gelu_forward(pre32.data(), out32.data(), bias.data(), N, F);
    cpu::bias_gelu_forward(pre16.data(), out16.data(), biasb.data(), N, F);
    expect_rounded_once(widen(pre16), pre32, "fc pre-activation");
    // GELU reads the pre-activation as stored: float GELU of the rounded pre-activation, rounded.
    std::vector<float> gelu_of_rounded(pre0.size());
    const auto pre_rounded = widen(pre16);
    cpu::gelu_forward(gelu_of_rounded.data(), pre_rounded.data(), int64_t(pre0.size()));
    EXPECT_EQ(widen(out16), rounded(gelu_of_rounded));
    const auto dout = rounded(values(pre0.size(), 27));
    std::vector<float> dpre32(pre0.size()), db32(F, 0.0f), db16(F, 0.0f);
    std::vector<cpu::bf16> dpre16(pre0.size());
    const auto doutb = to_bf16(dout);
    cpu::gelu_backward_bias(dpre32.data(), db32.data(), pre_rounded.data(), dout.data(), N, F);
    cpu::gelu_backward_bias(dpre16.data(), db16.data(), pre16.data(), doutb.data(), N, F);
    EXPECT_EQ(widen(dpre16), rounded(dpre32));
    // The bias gradient sums the rounded gradient (what linear_backward would sum).
    std::vector<float> db_of_rounded(F, 0.0f);
    const auto dpre_rounded = widen(dpre16);
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < F; ++o) db_of_rounded[o] += dpre_rounded[size_t(n) * F + o];
    }
    EXPECT_LT(relative_gap(db16, db_of_rounded), 1e-5);
  }
  {  // dropout: bf16 -> bf16 and the stream's float gradient -> bf16; drop-path with a gain
    const cpu::DropoutKey key{5, 7, 3, 11};
    const int B = 4;
    const int64_t row = int64_t(N) * C / B;
    const auto in16 = rounded(x);
    std::vector<float> out32(x.size());
    cpu::dropout_forward(out32.data(), in16.data(), B, row, 0.3, key);
    std::vector<cpu::bf16> out16(x.size());
    const auto inb = to_bf16(in16);
    cpu::dropout_forward(out16.data(), inb.data(), B, row, 0.3, key);
    EXPECT_EQ(widen(out16), rounded(out32));
    std::vector<float> from_float32(x.size());
    std::vector<cpu::bf16> from_float16(x.size());
    cpu::dropout_backward(from_float32.data(), x.data(), B, row, 0.3, key);
    cpu::dropout_backward(from_float16.data(), x.data(), B, row, 0.3, key);
    EXPECT_EQ(widen(from_float16), rounded(from_float32));
    auto paths32 = widen(out16);
    cpu::drop_path(paths32.data(), B, row, 0.5, key, 0.75);
    cpu::drop_path(out16.data(), B, row, 0.5, key, 0.75);
    EXPECT_EQ(widen(out16), rounded(paths32));
  }
  {  // softmax + cross-entropy on bf16 logits: the loss from the float probabilities
    const auto logits = rounded(values(size_t(N) * Vp, 28));
    std::vector<int32_t> targets(N);
    for (int n = 0; n < N; ++n) targets[n] = (n * 7) % V;
    auto probs32 = logits;
    auto probs16 = to_bf16(logits);
    std::vector<float> loss32(N), loss16(N);
    cpu::softmax_xent_forward(loss32.data(), probs32.data(), probs32.data(), targets.data(), N, V, Vp);
    cpu::softmax_xent_forward(loss16.data(), probs16.data(), probs16.data(), targets.data(), N, V, Vp);
    EXPECT_LT(relative_gap(loss16, loss32), 1e-6);
    EXPECT_EQ(widen(probs16), rounded(probs32));
    cpu::softmax_xent_backward(probs32.data(), probs32.data(), targets.data(), 0.125f, N, V, Vp);
    cpu::softmax_xent_backward(probs16.data(), probs16.data(), targets.data(), 0.125f, N, V, Vp);
    expect_rounded_once(widen(probs16), probs32, "dlogits");
  }
}

// Attention on bf16 q, k, v: the float kernel on the same values, its output rounded once; the
// input gradient likewise, the log-sum-exp kept in float.
TEST(Bf16Activations, AttentionIsTheFloatKernelRoundedOnce) {
  const int B = 2, T = 70, C = 32, NH = 2;  // T spans several tiles of both passes
  const auto qkv = rounded(values(size_t(B) * T * 3 * C, 31)), dout = rounded(values(size_t(B) * T * C, 32));
  std::vector<float> out32(size_t(B) * T * C), lse32(size_t(B) * NH * T), lse16(lse32.size());
  cpu::attention_forward(out32.data(), lse32.data(), qkv.data(), B, T, C, NH);
  const auto qkvb = to_bf16(qkv), doutb = to_bf16(dout);
  std::vector<cpu::bf16> out16(out32.size());
  cpu::attention_forward(out16.data(), lse16.data(), qkvb.data(), B, T, C, NH);
  expect_rounded_once(widen(out16), out32, "attention out");
  EXPECT_LT(relative_gap(lse16, lse32), 1e-6);
  // The backward pass reads the output as stored: give the float kernel the same rounded output.
  const auto out_rounded = widen(out16);
  std::vector<float> dqkv32(qkv.size());
  std::vector<cpu::bf16> dqkv16(qkv.size());
  cpu::attention_backward(dqkv32.data(), dout.data(), qkv.data(), out_rounded.data(), lse32.data(), B, T, C, NH);
  cpu::attention_backward(dqkv16.data(), doutb.data(), qkvb.data(), out16.data(), lse16.data(), B, T, C, NH);
  expect_rounded_once(widen(dqkv16), dqkv32, "attention dqkv");
}

// The Linear layer on bf16 activations: each product against a long-double sum of the same bf16
// values (out rounded once, after the bias), the parameter gradients in fp32; repeatable bit for bit.
TEST(Bf16Activations, LinearAgainstLongDouble) {
  KL_SKIP_WITHOUT_BF16();
  const int N = 37, I = 24, O = 20;
  const auto inp = rounded(values(size_t(N) * I, 41)), w = rounded(values(size_t(O) * I, 42)),
             b = rounded(values(O, 43)), dout = rounded(values(size_t(N) * O, 44));
  const auto inpb = to_bf16(inp), wb = to_bf16(w), bb = to_bf16(b), doutb = to_bf16(dout);
  std::vector<cpu::bf16> out(size_t(N) * O), dinp(size_t(N) * I);
  std::vector<float> dw(size_t(O) * I, 0.5f), db(O, 0.25f);
  cpu::linear_forward(out.data(), inpb.data(), wb.data(), bb.data(), N, I, O);
  cpu::linear_backward(dinp.data(), dw.data(), db.data(), doutb.data(), inpb.data(), wb.data(), N, I, O);
  std::vector<float> want_out(out.size()), want_dinp(dinp.size()), want_dw(dw.size()), want_db(O);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < O; ++o) {
      long double sum = b[o];
      for (int i = 0; i < I; ++i) sum += (long double)inp[size_t(n) * I + i] * w[size_t(o) * I + i];
      want_out[size_t(n) * O + o] = float(sum);
    }
    for (int i = 0; i < I; ++i) {
      long double sum = 0;
      for (int o = 0; o < O; ++o) sum += (long double)dout[size_t(n) * O + o] * w[size_t(o) * I + i];
      want_dinp[size_t(n) * I + i] = float(sum);
    }
  }
  for (int o = 0; o < O; ++o) {
    long double bias_sum = 0.25L;
    for (int i = 0; i < I; ++i) {
      long double sum = 0.5L;
      for (int n = 0; n < N; ++n) sum += (long double)dout[size_t(n) * O + o] * inp[size_t(n) * I + i];
      want_dw[size_t(o) * I + i] = float(sum);
    }
    for (int n = 0; n < N; ++n) bias_sum += dout[size_t(n) * O + o];
    want_db[o] = float(bias_sum);
  }
  // And the same bits a second time (oneDNN's sums are in a fixed order for a fixed thread count).
  std::vector<cpu::bf16> out2(out.size()), dinp2(dinp.size());
  std::vector<float> dw2(size_t(O) * I, 0.5f), db2(O, 0.25f);
  cpu::linear_forward(out2.data(), inpb.data(), wb.data(), bb.data(), N, I, O);
  cpu::linear_backward(dinp2.data(), dw2.data(), db2.data(), doutb.data(), inpb.data(), wb.data(), N, I, O);
  EXPECT_EQ(widen(out2), widen(out));
  EXPECT_EQ(widen(dinp2), widen(dinp));
  EXPECT_EQ(dw2, dw);
  EXPECT_EQ(db2, db);
  expect_rounded_once(widen(out), want_out, "linear out");
  expect_rounded_once(widen(dinp), want_dinp, "linear dinp");
  EXPECT_LT(relative_gap(dw, want_dw), 1e-5);
  EXPECT_LT(relative_gap(db, want_db), 1e-5);
}

// The whole model with bf16 activations against fp32, from the same parameters and batch: every
// residual variant (u read as a product's input, the kept branch, highway's gate, post-norm's
// float LayerNorm output), with dropout and stochastic depth. A walk that read a bf16 copy it never
// wrote, or a stale weight copy, fails by far more than bf16's rounding.
class Bf16Model : public ::testing::TestWithParam<const char*> {};

TEST_P(Bf16Model, LossAndGradientsFollowFp32) {
  KL_SKIP_WITHOUT_BF16();
  const std::string variant = GetParam();
  ModelConfig config;
  config.layers = 3;
  config.d_model = 32;
  config.heads = 2;
  config.seq_len = 24;
  config.vocab = 40;
  config.dropout = 0.1;
  const std::string residual = variant.substr(0, variant.find('+'));
  config.residual = *choice_named<Residual>(residual);
  if (variant.find("stochastic_depth") != std::string::npos) config.stochastic_depth = 0.5;
  const int B = 3;
  test::WholeModel<float> fp32(config, B, /*recompute=*/false);
  test::WholeModel<float, CpuBf16Backend> bf16(config, B, false);
  fp32.init(3);
  auto noise = test::random_vector(fp32.params().size(), 4, 0.05);  // rezero's scales leave 0 too
  for (size_t i = 0; i < noise.size(); ++i) fp32.params()[i] += float(noise[i]);
  std::copy(fp32.params().begin(), fp32.params().end(), bf16.params().begin());
  bf16.params_changed();
  std::vector<int32_t> inputs(size_t(B) * config.seq_len), targets(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i] = int32_t((i * 7 + 3) % config.vocab);
    targets[i] = int32_t((i * 5 + i * i) % config.vocab);
  }
  const BatchPosition position{2, 1, 6};
  const double scale = 1.0 / (B * config.seq_len);
  fp32.zero_grads();
  bf16.zero_grads();
  const double loss32 = fp32.forward_backward(inputs.data(), targets.data(), B, position, scale);
  const double loss16 = bf16.forward_backward(inputs.data(), targets.data(), B, position, scale);
  EXPECT_NEAR(loss16, loss32, 1e-3 * loss32) << variant;
  // Tensor by tensor: a wrong input to one block's product shows in that block's gradients, which
  // a distance over all parameters (the embeddings' gradients the largest) would hide.
  double all_diff = 0, all_norm = 0;
  for (const ParamSpec& spec : fp32.table().specs()) {
    double diff = 0, norm = 0;
    for (int64_t i = spec.offset; i < spec.offset + spec.numel(); ++i) {
      const double d = double(bf16.grads()[size_t(i)]) - fp32.grads()[size_t(i)];
      diff += d * d;
      norm += double(fp32.grads()[size_t(i)]) * fp32.grads()[size_t(i)];
    }
    all_diff += diff;
    all_norm += norm;
    EXPECT_LE(std::sqrt(diff), 0.05 * std::sqrt(norm) + 1e-6) << variant << " " << spec.name;
  }
  ASSERT_GT(all_norm, 0.0);
  EXPECT_LT(std::sqrt(all_diff / all_norm), 0.02) << variant << ": gradient's relative distance from fp32";
  EXPECT_GT(std::sqrt(all_diff / all_norm), 1e-5) << variant << ": no bf16 rounding at all";
}

INSTANTIATE_TEST_SUITE_P(Residual, Bf16Model,
                         ::testing::Values("prenorm", "postnorm", "plain", "rezero", "layerscale", "deepnorm", "highway",
                                           "prenorm+stochastic_depth", "layerscale+stochastic_depth"));

}  // namespace
}  // namespace kl
