// A pipeline stage without MPI: a stage built for the zero-bubble schedule's split backward pass
// (input part, then weight part) computes what the plain whole-model stage computes, bit for bit,
// with or without recomputation; and the stages' parameter tables cover the model's.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "tests/unit/whole_model.h"
#include "src/config/config.h"
#include "src/pipeline/stage.h"

namespace kl::pipeline {
namespace {

ModelConfig small_model() {
  ModelConfig m;
  m.layers = 5;
  m.d_model = 16;
  m.heads = 2;
  m.seq_len = 8;
  m.vocab = 13;
  m.dropout = 0.1;
  return m;
}

std::vector<int32_t> tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 5 + salt * 7 + i * i) % vocab;
  return t;
}

struct Case {
  bool split, recompute;
};

class WholeStage : public ::testing::TestWithParam<Case> {};

TEST_P(WholeStage, MatchesTheModelBitwise) {
  const ModelConfig config = small_model();
  const int B = 2;
  const auto inputs = tokens(B * config.seq_len, config.vocab, 1);
  const auto targets = tokens(B * config.seq_len, config.vocab, 2);
  const BatchPosition position{7, 3, 4};
  const double scale = 1.0 / (B * config.seq_len);

  test::WholeModel<float> model(config, B, /*recompute=*/false);
  model.init(11);
  model.zero_grads();
  const double expected = model.forward_backward(inputs.data(), targets.data(), B, position, scale);

  StageLayout layout;
  layout.ranges = {{0, config.layers}};
  CpuBackend<float> backend;
  Stage<CpuBackend<float>> stage(backend, config, layout, B, 1, GetParam().recompute, GetParam().split, 1);
  stage.init(11);
  stage.zero_grads();
  stage.forward(0, 0, B, nullptr, inputs.data(), targets.data(), position, true);
  const double loss = stage.take_loss_sum() / (B * config.seq_len);
  std::vector<int64_t> reported;
  const GradientsReady ready = [&](int64_t offset) { reported.push_back(offset); };
  if (GetParam().split) {
    stage.backward(0, 0, B, BackwardPart::kInput, nullptr, position, scale, {});
    stage.backward(0, 0, B, BackwardPart::kWeight, nullptr, position, scale, ready);
  } else {
    stage.backward(0, 0, B, BackwardPart::kAll, nullptr, position, scale, ready);
  }
  EXPECT_EQ(loss, expected);
  ASSERT_EQ(stage.params().size(), model.params().size());
  for (size_t i = 0; i < model.params().size(); ++i) {
    ASSERT_EQ(stage.params()[i], model.params()[i]) << "parameter " << i;
    ASSERT_EQ(stage.grads()[i], model.grads()[i]) << "gradient " << i;
  }
  // Reports run from the end of the buffer to its start, never upwards.
  ASSERT_FALSE(reported.empty());
  EXPECT_EQ(reported.back(), 0);
  for (size_t i = 1; i < reported.size(); ++i) EXPECT_LE(reported[i], reported[i - 1]);
}

INSTANTIATE_TEST_SUITE_P(Parts, WholeStage,
                         ::testing::Values(Case{false, false}, Case{true, false}, Case{false, true}, Case{true, true}));

TEST(StageTables, CoverTheModelOnce) {
  for (const char* tie : {"true", "false"}) {
    const Config c = load_config("", {"--model.layers=7", "--parallel.pp=3", "--parallel.schedule=interleaved",
                                      "--parallel.virtual=2", std::string("--model.tie_embeddings=") + tie});
    const ParamTable whole(c.model);
    std::map<std::string, int> holders;
    for (int s = 0; s < 3; ++s) {
      const StageLayout layout = stage_layout(c, s);
      ASSERT_EQ(layout.ranges.size(), 2u);
      const ParamTable table(c.model, layout.layers(), layout.has_embeddings(), layout.has_head());
      for (const ParamSpec& spec : table.specs()) {
        const ParamSpec& global = whole.get(spec.name);
        EXPECT_EQ(spec.shape, global.shape) << spec.name;
        ++holders[spec.name];
      }
    }
    ASSERT_EQ(holders.size(), whole.specs().size());
    for (const auto& [name, count] : holders) {
      // A tied token embedding lives on the first stage (embedding) and the last (head).
      const int expected = (name == "embed.token.weight" && std::string(tie) == "true") ? 2 : 1;
      EXPECT_EQ(count, expected) << name;
    }
  }
}

}  // namespace
}  // namespace kl::pipeline
