// Depth parametrisations (model.depth_scaling, models/residual.h) and stochastic depth that skips
// dropped blocks (models/block_impl.h), against independent computations: the standard model at the
// base depth, a standard model with its branch output projections scaled by hand, AdamW called
// directly with the scaled learning rate and epsilon, and the compute-and-zero block. Finite
// differences of every variant are in test_model_grad.cpp; PyTorch's per-group AdamW in
// test_torch_reference.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/backend.h"
#include "models/block_impl.h"
#include "src/train/optimizer.h"
#include "src/util/error.h"
#include "tests/unit/block_memory.h"
#include "tests/unit/gradcheck.h"
#include "tests/unit/whole_model.h"

namespace kl {
namespace {

ModelConfig small(int layers) {
  ModelConfig m;
  m.layers = layers;
  m.d_model = 8;
  m.heads = 2;
  m.d_ff = 12;
  m.seq_len = 5;
  m.vocab = 11;
  m.dropout = 0.2;
  return m;
}

std::vector<int32_t> tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 5 + salt * 7 + i * i) % vocab;
  return t;
}

struct Step {
  double loss;
  std::vector<double> logits, grads;
};
Step one_step(test::WholeModel<double>& model, int B) {
  const ModelConfig& c = model.config();
  const auto inputs = tokens(B * c.seq_len, c.vocab, 1), targets = tokens(B * c.seq_len, c.vocab, 2);
  model.zero_grads();
  const double loss = model.forward_backward(inputs.data(), targets.data(), B, {3, 4, 5}, 1.0 / (B * c.seq_len));
  const auto logits = model.logits();
  return {loss, {logits.begin(), logits.end()}, {model.grads().begin(), model.grads().end()}};
}

TEST(DepthScaling, TheFactorsFollowTheFormulas) {
  // (L0/L)^alpha, (L/L0)^(alpha-1), (L/L0)^-alpha at L = 32, L0 = 8.
  const DepthScale mup = depth_scale(DepthScaling::kDepthMuP, 32, 8), cp = depth_scale(DepthScaling::kCompleteP, 32, 8);
  EXPECT_DOUBLE_EQ(mup.branch, 0.5);
  EXPECT_DOUBLE_EQ(mup.lr, 0.5);
  EXPECT_DOUBLE_EQ(mup.eps, 0.5);
  EXPECT_DOUBLE_EQ(cp.branch, 0.25);
  EXPECT_DOUBLE_EQ(cp.lr, 1.0);
  EXPECT_DOUBLE_EQ(cp.eps, 0.25);
  const DepthScale standard = depth_scale(DepthScaling::kStandard, 32, 8);
  EXPECT_EQ(standard.branch * standard.lr * standard.eps, 1.0);
  // The table: block tensors carry the factors, embeddings, final norm and head do not; the output
  // projections are initialised as GPT-2's at L0.
  ModelConfig m = small(32);
  m.depth_scaling = DepthScaling::kDepthMuP;
  m.base_layers = 8;
  const ParamTable table(m);
  for (const ParamSpec& s : table.specs()) {
    EXPECT_EQ(s.lr_scale, s.layer >= 0 ? 0.5 : 1.0) << s.name;
    EXPECT_EQ(s.eps_scale, s.layer >= 0 ? 0.5 : 1.0) << s.name;
  }
  EXPECT_DOUBLE_EQ(table.get("layers/000031/mlp.proj.weight").init_std, 0.02 / std::sqrt(16.0));
  EXPECT_DOUBLE_EQ(ParamTable(small(32)).get("layers/000031/mlp.proj.weight").init_std, 0.02 / std::sqrt(64.0));
}

TEST(DepthScaling, AtTheBaseDepthEveryParametrisationIsTheStandardModel) {
  const int B = 2;
  test::WholeModel<double> standard(small(4), B, false);
  standard.init(5);
  const Step want = one_step(standard, B);
  for (DepthScaling d : {DepthScaling::kDepthMuP, DepthScaling::kCompleteP}) {
    ModelConfig m = small(4);
    m.depth_scaling = d;
    m.base_layers = 4;
    test::WholeModel<double> model(m, B, false);
    model.init(5);
    const Step got = one_step(model, B);
    EXPECT_EQ(got.loss, want.loss) << name_of(d);
    EXPECT_EQ(got.logits, want.logits) << name_of(d);
    EXPECT_EQ(got.grads, want.grads) << name_of(d);
  }
}

TEST(DepthScaling, TheMultiplierScalesEveryBranch) {
  // CompleteP at L = 4, L0 = 2 multiplies each branch by 1/2. A branch is linear in its output
  // projection (weight and bias), so the standard model with those halved computes the same
  // function; the gradients of the other tensors agree, and those of the halved ones are twice the
  // scaled model's (d/dW of F(W/2) ...). Every product by 1/2 is exact in binary.
  const int B = 2;
  ModelConfig m = small(4);
  m.dropout = 0.0;
  m.depth_scaling = DepthScaling::kCompleteP;
  m.base_layers = 2;
  test::WholeModel<double> scaled(m, B, false);
  scaled.init(6);
  auto noise = test::random_vector(scaled.params().size(), 3, 0.1);
  for (size_t i = 0; i < noise.size(); ++i) scaled.params()[i] += noise[i];
  m.depth_scaling = DepthScaling::kStandard;
  test::WholeModel<double> by_hand(m, B, false);
  std::copy(scaled.params().begin(), scaled.params().end(), by_hand.params().begin());
  auto output_projection = [](const std::string& name) {
    return name.find("proj.") != std::string::npos;  // attn.proj.* and mlp.proj.*
  };
  for (const ParamSpec& s : by_hand.table().specs()) {
    if (!output_projection(s.name)) continue;
    for (int64_t i = 0; i < s.numel(); ++i) by_hand.params()[static_cast<size_t>(s.offset + i)] *= 0.5;
  }
  const Step want = one_step(by_hand, B), got = one_step(scaled, B);
  EXPECT_NEAR(got.loss, want.loss, 1e-13);
  for (size_t i = 0; i < want.logits.size(); ++i) ASSERT_NEAR(got.logits[i], want.logits[i], 1e-12) << i;
  for (const ParamSpec& s : scaled.table().specs()) {
    const double factor = output_projection(s.name) ? 0.5 : 1.0;  // dL/dW = (1/2) dL/d(W/2)
    for (int64_t i = 0; i < s.numel(); ++i) {
      const auto at = static_cast<size_t>(s.offset + i);
      ASSERT_NEAR(got.grads[at], factor * want.grads[at], 1e-12) << s.name << "[" << i << "]";
    }
  }
}

TEST(DepthScaling, AdamWUsesEachTensorsLearningRateAndEpsilon) {
  ModelConfig m = small(8);
  m.depth_scaling = DepthScaling::kDepthMuP;
  m.base_layers = 2;  // block tensors: lr x 1/2, eps x 1/2
  test::WholeModel<double> model(m, 1, false);
  model.init(9);
  const auto grads = test::random_vector(model.params().size(), 4, 1e-3);
  std::copy(grads.begin(), grads.end(), model.grads().begin());
  const std::vector<double> before(model.params().begin(), model.params().end());
  TrainConfig t;
  t.eps = 1e-3;  // large, so that a wrong epsilon shows
  AdamW<double> adamw(model.table(), t, 0, static_cast<int64_t>(before.size()), model.ops());
  adamw.update(model.params(), model.grads(), 0.01, 1);
  for (const ParamSpec& s : model.table().specs()) {
    std::vector<double> p(before.begin() + s.offset, before.begin() + s.offset + s.numel());
    std::vector<double> mom(p.size(), 0.0), var(p.size(), 0.0);
    const double lr = s.layer >= 0 ? 0.005 : 0.01, eps = s.layer >= 0 ? 5e-4 : 1e-3;
    cpu::adamw_update(p.data(), grads.data() + s.offset, mom.data(), var.data(), s.numel(), lr, t.beta1, t.beta2, eps,
                      s.decay ? t.weight_decay : 0.0, 1);
    for (int64_t i = 0; i < s.numel(); ++i) {
      ASSERT_DOUBLE_EQ(model.params()[static_cast<size_t>(s.offset + i)], p[static_cast<size_t>(i)]) << s.name;
    }
  }
}

std::string config_error(const std::vector<std::string>& overrides) {
  try {
    load_config("", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(DepthScaling, ConfigCombinesItWithAdditiveBranchesOnly) {
  for (const char* ok : {"prenorm", "plain", "layerscale"}) {
    EXPECT_EQ(config_error({"--model.depth_scaling=completep", "--model.base_layers=4",
                            std::string("--model.residual=") + ok}), "") << ok;
  }
  for (const char* refused : {"postnorm", "deepnorm", "rezero", "highway"}) {
    const std::string e = config_error({"--model.depth_scaling=depth_mup", "--model.base_layers=4",
                                        std::string("--model.residual=") + refused});
    EXPECT_NE(e.find(std::string("does not combine with model.residual = ") + refused), std::string::npos) << e;
  }
  EXPECT_NE(config_error({"--model.depth_scaling=completep"}).find("needs model.base_layers"), std::string::npos);
  EXPECT_NE(config_error({"--model.depth_scaling=muP"}).find("standard | depth_mup | completep"), std::string::npos);
  EXPECT_EQ(config_error({"--model.residual=deepnorm", "--model.base_layers=4"}), "");  // standard ignores L0
}

// One block with stochastic depth, the skipping walk against the compute-and-zero one
// (block_detail::forward_all / backward_all): the same output, input gradient and parameter
// gradients, for the full backward pass and for the split one (input part, then weight part).
class SkippedBlock : public ::testing::TestWithParam<Residual> {};

TEST_P(SkippedBlock, EqualsTheComputedAndZeroedBlock) {
  using Be = CpuBackend<double>;
  ModelConfig m = small(1);
  m.residual = GetParam();
  m.stochastic_depth = 0.55;
  const int B = 9;
  const BlockShape s = block_shape(m, B);
  const ParamTable table(m);
  std::vector<double> params(static_cast<size_t>(table.buffer_size()));
  init_parameters(table, 4, params.data());
  const auto noise = test::random_vector(params.size(), 8, 0.1);
  for (size_t i = 0; i < params.size(); ++i) params[i] += noise[i];
  const auto w = block_tensors<const double*>(table, params.data(), 0);
  const BlockDropout dropout = BlockDropout::make(m, 11, 2, 30, true);
  const auto runs = block_detail::kept_runs(dropout, 0, B);
  int kept = 0;
  for (const auto& r : runs) kept += r.end - r.begin;
  ASSERT_GT(kept, 0);
  ASSERT_LT(kept, B);
  ASSERT_GT(runs.size(), 1u);  // more than one run: the views start inside the batch

  Be be;
  const int64_t NC = s.tokens() * s.C;
  const auto x_in = test::random_vector(static_cast<size_t>(NC), 1), dy = test::random_vector(static_cast<size_t>(NC), 2);
  struct Result {
    std::vector<double> out, dx, grads;
  };
  auto run = [&](bool skip, bool split) {
    const test::BlockMemory<Be> memory(s);
    const auto& a = memory.a;
    const auto& scratch = memory.scratch;
    const auto& carved = memory.grads;
    std::vector<double> grads(params.size(), 0.0), out(static_cast<size_t>(NC)), dres = dy;
    const auto g = block_tensors<double*>(table, grads.data(), 0);
    if (skip) {
      block_forward(be, s, 0, w, x_in.data(), out.data(), a, scratch, dropout);
      if (split) {
        block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kInput, carved);
        block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kWeight, carved);
      } else {
        block_backward(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kAll,
                       BlockOutputGrads<Be>::in_scratch(scratch));
      }
    } else {
      block_detail::forward_all(be, s, 0, w, x_in.data(), out.data(), a, scratch, dropout, nullptr);
      block_detail::backward_all(be, s, 0, w, g, x_in.data(), a, scratch, dropout, dres.data(), BackwardPart::kAll,
                                 BlockOutputGrads<Be>::in_scratch(scratch));
    }
    return Result{out, dres, grads};
  };
  const Result want = run(false, false);
  const bool splits = m.residual == Residual::kPreNorm;  // the split backward exists for pre-norm only
  for (const bool split : splits ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
    const Result got = run(true, split);
    SCOPED_TRACE(split ? "split backward" : "full backward");
    for (size_t i = 0; i < want.out.size(); ++i) ASSERT_NEAR(got.out[i], want.out[i], 1e-13) << "x_out " << i;
    for (size_t i = 0; i < want.dx.size(); ++i) ASSERT_NEAR(got.dx[i], want.dx[i], 1e-13) << "dL/dx_in " << i;
    for (size_t i = 0; i < want.grads.size(); ++i) ASSERT_NEAR(got.grads[i], want.grads[i], 1e-13) << "grad " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(IdentityWhenDropped, SkippedBlock,
                         ::testing::Values(Residual::kPreNorm, Residual::kLayerScale, Residual::kReZero));

}  // namespace
}  // namespace kl
