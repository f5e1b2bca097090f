// The whole model's backward pass against finite differences (double precision), and the
// equivalences the trainer relies on: micro-batching and recomputation change nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "tests/unit/whole_model.h"
#include "tests/unit/gradcheck.h"

namespace kl {
namespace {

ModelConfig tiny_model(bool tie) {
  ModelConfig m;
  m.layers = 3;
  m.d_model = 8;
  m.heads = 2;
  m.d_ff = 12;
  m.seq_len = 5;
  m.vocab = 11;
  m.dropout = 0.2;  // on: the masks are fixed by the batch position, so the loss is a function
  m.tie_embeddings = tie;
  return m;
}

std::vector<int32_t> tokens(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7 + seed * 3 + i * i) % vocab);
  return t;
}

// Tied and untied; unpadded and with model.vocab_padded = 16 for the 11 tokens. The padding rows get
// noise too: the loss does not read them, so their finite-difference gradient is 0, as the analytic.
class ModelGrad : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(ModelGrad, EveryParameterMatchesFiniteDifferences) {
  ModelConfig config = tiny_model(std::get<0>(GetParam()));
  if (std::get<1>(GetParam())) config.vocab_padded = 16;
  const int B = 2;
  test::WholeModel<double> model(config, B, /*recompute=*/false);
  model.init(99);
  // Non-trivial LayerNorm parameters and biases, so that their gradients are exercised fully.
  auto noise = test::random_vector(model.params().size(), 5, 0.1);
  for (size_t i = 0; i < noise.size(); ++i) model.params()[i] += noise[i];
  const auto inputs = tokens(B * config.seq_len, config.vocab, 1);
  const auto targets = tokens(B * config.seq_len, config.vocab, 2);
  const BatchPosition position{17, 3, 40};
  const double scale = 1.0 / (B * config.seq_len);

  model.zero_grads();
  model.forward_backward(inputs.data(), targets.data(), B, position, scale);
  const std::vector<double> analytic(model.grads().begin(), model.grads().end());
  // The training-mode loss (same dropout masks) as a function of the parameters.
  test::WholeModel<double> probe(config, B, false);
  std::copy(model.params().begin(), model.params().end(), probe.params().begin());
  auto loss = [&] {
    probe.zero_grads();
    return probe.forward_backward(inputs.data(), targets.data(), B, position, 0.0);
  };
  for (const ParamSpec& spec : model.table().specs()) {
    test::expect_gradient(spec.name, probe.params().data() + spec.offset,
                          analytic.data() + spec.offset, spec.numel(), loss, 1e-8, 1e-5);
  }
  for (const char* name : {"embed.token.weight", "head.weight"}) {  // the padding's gradient: exactly 0
    const ParamSpec* spec = model.table().find(name);
    if (!spec) continue;
    ASSERT_EQ(spec->shape[0], config.padded_vocab()) << name;
    for (int64_t i = int64_t{config.vocab} * config.d_model; i < spec->numel(); ++i) {
      ASSERT_EQ(analytic[static_cast<size_t>(spec->offset + i)], 0.0) << name << "[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntiedPaddedOrNot, ModelGrad, ::testing::Combine(::testing::Bool(), ::testing::Bool()));

// "residual[+stochastic_depth][+depth_mup|+completep]": a variant, with stochastic depth (some rows
// dropped, some kept: skipped for prenorm, rezero and layerscale, zeroed for the rest) and a depth
// parametrisation at L0 = 2 (3 blocks: branch multiplier (2/3)^alpha).
ModelConfig variant_model(const std::string& variant) {
  ModelConfig config = tiny_model(true);
  const std::string residual = variant.substr(0, variant.find('+'));
  config.residual = residual == "stochastic_depth" ? Residual::kPreNorm : *choice_named<Residual>(residual);
  if (variant.find("stochastic_depth") != std::string::npos) config.stochastic_depth = 0.6;
  for (DepthScaling d : {DepthScaling::kDepthMuP, DepthScaling::kCompleteP}) {
    if (variant.find(std::string("+") + name_of(d)) != std::string::npos) {
      config.depth_scaling = d;
      config.base_layers = 2;
    }
  }
  return config;
}

// Every residual variant (and stochastic depth, and the depth parametrisations) against finite
// differences, every parameter.
class VariantGrad : public ::testing::TestWithParam<const char*> {};

TEST_P(VariantGrad, EveryParameterMatchesFiniteDifferences) {
  const std::string variant = GetParam();
  const ModelConfig config = variant_model(variant);
  const int B = 3;
  test::WholeModel<double> model(config, B, /*recompute=*/false);
  model.init(7);
  auto noise = test::random_vector(model.params().size(), 9, 0.1);  // rezero's scales leave 0 too
  for (size_t i = 0; i < noise.size(); ++i) model.params()[i] += noise[i];
  const auto inputs = tokens(B * config.seq_len, config.vocab, 3);
  const auto targets = tokens(B * config.seq_len, config.vocab, 4);
  const BatchPosition position{21, 5, 8};
  model.zero_grads();
  model.forward_backward(inputs.data(), targets.data(), B, position, 1.0 / (B * config.seq_len));
  const std::vector<double> analytic(model.grads().begin(), model.grads().end());
  test::WholeModel<double> probe(config, B, false);
  std::copy(model.params().begin(), model.params().end(), probe.params().begin());
  auto loss = [&] { return probe.forward_backward(inputs.data(), targets.data(), B, position, 0.0); };
  for (const ParamSpec& spec : model.table().specs()) {
    test::expect_gradient(variant + " " + spec.name, probe.params().data() + spec.offset,
                          analytic.data() + spec.offset, spec.numel(), loss, 1e-8, 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Residual, VariantGrad,
                         ::testing::Values("postnorm", "plain", "rezero", "layerscale", "deepnorm", "highway",
                                           "stochastic_depth", "rezero+stochastic_depth",
                                           "layerscale+stochastic_depth", "postnorm+stochastic_depth",
                                           "prenorm+depth_mup", "prenorm+completep", "plain+completep",
                                           "layerscale+depth_mup+stochastic_depth"));

TEST(ModelVariants, ReZeroStartsAsTheIdentity) {
  // At initialisation every rezero block passes the stream through exactly: 5 blocks compute the
  // same logits as 1, bit for bit, dropout and all.
  ModelConfig config = tiny_model(true);
  config.residual = Residual::kReZero;
  const int B = 2;
  const auto inputs = tokens(B * config.seq_len, config.vocab, 5);
  const auto targets = tokens(B * config.seq_len, config.vocab, 6);
  auto logits = [&](int layers) {
    ModelConfig c = config;
    c.layers = layers;
    test::WholeModel<float> model(c, B, false);
    model.init(3);
    model.zero_grads();
    model.forward_backward(inputs.data(), targets.data(), B, {4, 2, 0}, 0.1);
    return model.logits();
  };
  EXPECT_EQ(logits(5), logits(1));
}

TEST(ModelVariants, DeepNormInitialisation) {
  ModelConfig config = tiny_model(true);
  config.residual = Residual::kDeepNorm;
  config.layers = 6;
  config.d_model = 64;
  config.heads = 4;
  test::WholeModel<double> model(config, 1, false);
  model.init(2);
  const double beta = std::pow(8.0 * 6, -0.25);
  const ParamSpec& qkv = model.table().get("layers/000002/attn.qkv.weight");
  auto stddev = [&](int64_t begin, int64_t end) {
    double sq = 0;
    for (int64_t i = begin; i < end; ++i) sq += std::pow(model.params()[static_cast<size_t>(qkv.offset + i)], 2);
    return std::sqrt(sq / double(end - begin));
  };
  const int64_t C = 64;
  EXPECT_NEAR(stddev(0, 2 * C * C), 0.02, 0.001);               // queries and keys: unscaled
  EXPECT_NEAR(stddev(2 * C * C, 3 * C * C), 0.02 * beta, 0.001);  // values: gain beta
  EXPECT_DOUBLE_EQ(model.table().get("layers/000002/mlp.fc.weight").init_std, 0.02 * beta);
}

TEST(ModelEquivalence, MicroBatchesSumToTheFullBatch) {
  const ModelConfig config = tiny_model(true);
  const int B = 4;
  test::WholeModel<double> whole(config, B, false), parts(config, 1, false);
  whole.init(3);
  parts.init(3);
  const auto inputs = tokens(B * config.seq_len, config.vocab, 4);
  const auto targets = tokens(B * config.seq_len, config.vocab, 5);
  const double scale = 1.0 / (B * config.seq_len);
  whole.zero_grads();
  const double loss = whole.forward_backward(inputs.data(), targets.data(), B, {1, 2, 0}, scale);
  parts.zero_grads();
  double loss_parts = 0;
  for (int b = 0; b < B; ++b) {
    const int64_t at = int64_t{b} * config.seq_len;
    loss_parts += parts.forward_backward(inputs.data() + at, targets.data() + at, 1, {1, 2, b}, scale) / B;
  }
  EXPECT_NEAR(loss, loss_parts, 1e-12);
  for (size_t i = 0; i < whole.grads().size(); ++i) {
    ASSERT_NEAR(whole.grads()[i], parts.grads()[i], 1e-12) << "element " << i;
  }
}

TEST(ModelEquivalence, BlockRecomputationIsBitwiseIdentical) {
  ModelConfig config = tiny_model(true);
  config.layers = 6;
  const int B = 3;
  test::WholeModel<float> stored(config, B, false), recomputed(config, B, true);
  stored.init(8);
  recomputed.init(8);
  const auto inputs = tokens(B * config.seq_len, config.vocab, 6);
  const auto targets = tokens(B * config.seq_len, config.vocab, 7);
  stored.zero_grads();
  recomputed.zero_grads();
  const double a = stored.forward_backward(inputs.data(), targets.data(), B, {5, 1, 0}, 0.1);
  const double b = recomputed.forward_backward(inputs.data(), targets.data(), B, {5, 1, 0}, 0.1);
  EXPECT_EQ(a, b);
  for (size_t i = 0; i < stored.grads().size(); ++i) ASSERT_EQ(stored.grads()[i], recomputed.grads()[i]);
}

TEST(ModelInit, FollowsTheTable) {
  ModelConfig config = tiny_model(true);
  config.layers = 8;
  config.d_model = 64;
  config.heads = 4;
  config.d_ff = 0;
  test::WholeModel<double> model(config, 1, false);
  model.init(1);
  auto stddev = [&](const std::string& name) {
    const ParamSpec& s = model.table().get(name);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const double x = model.params()[static_cast<size_t>(s.offset + i)];
      sum += x;
      sq += x * x;
    }
    const double mean = sum / s.numel();
    return std::sqrt(sq / s.numel() - mean * mean);
  };
  EXPECT_NEAR(stddev("layers/000003/mlp.fc.weight"), 0.02, 0.001);
  EXPECT_NEAR(stddev("layers/000003/mlp.proj.weight"), 0.02 / std::sqrt(16.0), 0.0003);
  EXPECT_NEAR(stddev("layers/000005/attn.proj.weight"), 0.02 / std::sqrt(16.0), 0.0005);
  EXPECT_EQ(model.table().get("layers/000003/ln1.weight").init, Init::kOnes);
  EXPECT_EQ(model.params()[static_cast<size_t>(model.table().get("layers/000007/ln2.weight").offset)], 1.0);
  EXPECT_EQ(model.params()[static_cast<size_t>(model.table().get("layers/000007/mlp.fc.bias").offset)], 0.0);
  EXPECT_EQ(model.table().get("layers/000000/mlp.fc.weight").shape, (std::vector<int64_t>{256, 64}));
  // N = V C + T C + L (12 C^2 + 13 C) + 2 C with d_ff = 4C, tied head.
  const int64_t C = 64, L = 8;
  EXPECT_EQ(model.table().parameter_count(), 11 * C + 5 * C + L * (12 * C * C + 13 * C) + 2 * C);
  // Weight decay on matrices only.
  for (const auto& s : model.table().specs()) EXPECT_EQ(s.decay, s.shape.size() == 2) << s.name;
}

}  // namespace
}  // namespace kl
