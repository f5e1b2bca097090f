// The MLP's fc bias fused into GELU (cpu::bias_gelu_forward, cpu::gelu_backward_bias and the
// backend ops built on them): against finite differences in double, against the unfused composition
// it replaced (linear_forward with its bias, gelu_forward; gelu_backward, linear_backward's bias sum)
// at widths that are not a multiple of the vector width and under several thread counts, and one
// block's split backward pass (input part, then weight part) against its whole backward pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/backend.h"
#include "models/block_impl.h"
#include "src/kernels/cpu/ops.h"
#include "tests/unit/block_memory.h"
#include "tests/unit/gradcheck.h"

namespace kl {
namespace {

using test::random_vector;
using test::to_float;
using test::with_threads;

TEST(BiasGelu, GradientsMatchFiniteDifferences) {
  const int N = 3, O = 11;
  auto product = random_vector(N * O, 51, 2.0), bias = random_vector(O, 52);
  const auto dout = random_vector(N * O, 53);
  std::vector<double> pre(N * O), out(N * O);
  auto loss = [&] {
    pre = product;  // the op turns the product into the pre-activation in place
    cpu::bias_gelu_forward(pre.data(), out.data(), bias.data(), N, O);
    return test::weighted_sum(out, dout);
  };
  loss();
  for (int i = 0; i < N * O; ++i) EXPECT_EQ(pre[i], product[i] + bias[i % O]);  // kept for the backward pass
  // dbias accumulates: start from an offset and take it off afterwards.
  std::vector<double> dpre(N * O), dbias(O, 0.25);
  cpu::gelu_backward_bias(dpre.data(), dbias.data(), pre.data(), dout.data(), N, O);
  for (auto& g : dbias) g -= 0.25;
  test::expect_gradient("bias_gelu dpre", product.data(), dpre.data(), N * O, loss);
  test::expect_gradient("bias_gelu dbias", bias.data(), dbias.data(), O, loss);
}

// What the fused ops replaced, in float, through the backend the model walk calls. O = 37 and
// N = 13 leave remainders after every vector width; threads 1-3 split the 37 columns unevenly.
TEST(BiasGelu, MatchesTheUnfusedComposition) {
  const int N = 13, I = 9, O = 37;
  const auto inp = to_float(random_vector(N * I, 61)), w = to_float(random_vector(O * I, 62, 0.5)),
             b = to_float(random_vector(O, 63)), dout = to_float(random_vector(N * O, 64));
  const auto db_start = to_float(random_vector(O, 65));
  std::vector<float> first_dbias;
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    with_threads(threads, [&] {
      // Forward: the product with the bias in it, then GELU.
      std::vector<float> want_pre(N * O), want_out(N * O);
      cpu::linear_forward(want_pre.data(), inp.data(), w.data(), b.data(), N, I, O);
      cpu::gelu_forward(want_out.data(), want_pre.data(), N * O);
      const CpuBackend<float> be;
      std::vector<float> pre(N * O), out(N * O);
      be.linear_gelu_forward(pre.data(), out.data(), inp.data(), w.data(), b.data(), N, I, O);
      for (int i = 0; i < N * O; ++i) {
        // The bias added after the product rather than before it: one rounding apart at most.
        ASSERT_NEAR(pre[i], want_pre[i], 1e-6f * std::max(1.0f, std::abs(want_pre[i]))) << i;
        ASSERT_NEAR(out[i], want_out[i], 2e-6f * std::max(1.0f, std::abs(want_out[i]))) << i;
      }
      // Backward on the same pre-activation: GELU's backward, then the bias sum of linear_backward.
      std::vector<float> want_d(N * O), want_db = db_start;
      cpu::gelu_backward(want_d.data(), want_pre.data(), dout.data(), N * O);
      cpu::linear_backward<float>(nullptr, nullptr, want_db.data(), want_d.data(), inp.data(), w.data(), N, I, O);
      std::vector<float> d = dout, db = db_start;  // d aliases dout, as in the walk
      be.gelu_backward_bias(d.data(), db.data(), want_pre.data(), d.data(), N, O);
      // The same products and the same sums in the same order: the same bits.
      EXPECT_EQ(d, want_d);
      EXPECT_EQ(db, want_db);
      // No bias gradient (the input half of a split backward pass): dpre alone, dbias untouched.
      std::vector<float> d_only(N * O);
      be.gelu_backward_bias(d_only.data(), nullptr, want_pre.data(), dout.data(), N, O);
      EXPECT_EQ(d_only, want_d);
      // Row blocks summed in a fixed order (cpu::add_column_sums): the same bits whatever the thread count.
      if (first_dbias.empty()) first_dbias = db;
      EXPECT_EQ(db, first_dbias);
    });
  }
}

// The bias sums over several row blocks (cpu::add_column_sums: blocks of 32 rows handed to the
// threads, then added in order): N = 100 is three whole blocks and a part. The same bits under 1-3
// threads, GELU's fused sum equal to linear_backward's, and both within float rounding of the sum
// in long double.
TEST(BiasGelu, BiasSumsAcrossRowBlocksIndependentOfThreads) {
  const int N = 100, I = 5, O = 37;
  const auto pre = to_float(random_vector(N * O, 71, 2.0)), dout = to_float(random_vector(N * O, 72));
  const auto inp = to_float(random_vector(N * I, 73)), w = to_float(random_vector(O * I, 74));
  const auto db_start = to_float(random_vector(O, 75));
  std::vector<float> first;
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    with_threads(threads, [&] {
      std::vector<float> d(N * O), db_fused = db_start, db_linear = db_start;
      cpu::gelu_backward_bias(d.data(), db_fused.data(), pre.data(), dout.data(), N, O);
      cpu::linear_backward<float>(nullptr, nullptr, db_linear.data(), d.data(), inp.data(), w.data(), N, I, O);
      EXPECT_EQ(db_fused, db_linear);
      for (int o = 0; o < O; ++o) {
        long double want = db_start[o], scale = std::fabs(db_start[o]);
        for (int n = 0; n < N; ++n) {
          want += d[n * O + o];
          scale += std::fabs(d[n * O + o]);
        }
        EXPECT_NEAR(db_fused[o], double(want), 1e-6 * double(scale)) << o;
      }
      if (first.empty()) first = db_fused;
      EXPECT_EQ(db_fused, first);
    });
  }
}

// One pre-norm block (d_ff = 37: the fused passes' odd width) in float: the split backward pass,
// whose weight half sums the fc bias gradient from the dL/dfc its input half left, against the
// whole pass, which sums it in GELU's backward pass. Bit for bit, as the pipeline's stages need.
TEST(BiasGelu, SplitBackwardEqualsTheWholePass) {
  using Be = CpuBackend<float>;
  ModelConfig m;
  m.layers = 1;
  m.d_model = 8;
  m.heads = 2;
  m.d_ff = 37;
  m.seq_len = 7;
  m.vocab = 11;
  const BlockShape s = block_shape(m, 3);
  const ParamTable table(m);
  std::vector<float> params(static_cast<size_t>(table.buffer_size()));
  init_parameters(table, 4, params.data());
  const auto noise = random_vector(params.size(), 8, 0.1);
  for (size_t i = 0; i < params.size(); ++i) params[i] += static_cast<float>(noise[i]);  // biases not 0
  const auto w = block_tensors<const float*>(table, params.data(), 0);
  const BlockDropout dropout = BlockDropout::make(m, 11, 2, 0, true);
  const int64_t NC = s.tokens() * s.C;
  const auto x_in = to_float(random_vector(static_cast<size_t>(NC), 1));
  const auto dy = to_float(random_vector(static_cast<size_t>(NC), 2));
  Be be;
  auto run = [&](bool split) {
    const test::BlockMemory<Be> memory(s);
    const auto& a = memory.a;
    const auto& scratch = memory.scratch;
    const auto& carved = memory.grads;
    std::vector<float> grads(params.size(), 0.0f), out(static_cast<size_t>(NC)), dres = dy;
    const auto g = block_tensors<float*>(table, grads.data(), 0);
    block_forward(be, s, 0, w, x_in.data(), out.data(), a, scratch, dropout);
    if (split) {
      block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kInput, carved);
      block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kWeight, carved);
    } else {
      block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kAll, carved);
    }
    grads.insert(grads.end(), dres.begin(), dres.end());
    return grads;
  };
  const auto whole = run(false);
  const auto fc_b = block_tensors<const float*>(table, whole.data(), 0).fc_b;
  ASSERT_TRUE(std::any_of(fc_b, fc_b + s.F, [](float x) { return x != 0.0f; }));  // the fused sum ran
  EXPECT_EQ(run(true), whole);
}

}  // namespace
}  // namespace kl
