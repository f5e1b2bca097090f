// Pipeline layer partition: balanced by the cost model (checked against brute force), explicit
// counts validated.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "src/pipeline/partition.h"
#include "src/util/error.h"

namespace kl::pipeline {
namespace {

ModelConfig model(int layers, int d, int vocab) {
  ModelConfig m;
  m.layers = layers;
  m.d_model = d;
  m.heads = 2;
  m.seq_len = 128;
  m.vocab = vocab;
  return m;
}

double max_cost(const ModelConfig& m, const std::vector<LayerRange>& ranges) {
  const ChunkCosts c = chunk_costs(m);
  double worst = 0;
  for (size_t k = 0; k < ranges.size(); ++k) {
    // Each block at its expected cost: (1 - p_l) of a block under skipping stochastic depth.
    double blocks = 0;
    for (int l = ranges[k].begin; l < ranges[k].end; ++l) {
      blocks += c.block * (m.stochastic_depth > 0 ? 1.0 - m.stochastic_depth * (l + 1) / m.layers : 1.0);
    }
    worst = std::max(worst, blocks + (k == 0 ? c.first_extra : 0) + (k + 1 == ranges.size() ? c.last_extra : 0));
  }
  return worst;
}

TEST(Partition, EvenWhenTheHeadIsCheap) {
  const auto r = partition_layers(model(16, 128, 256), 4);
  ASSERT_EQ(r.size(), 4u);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(r[k].end - r[k].begin, 4) << describe(r, 4);
  EXPECT_EQ(r.front().begin, 0);
  EXPECT_EQ(r.back().end, 16);
}

TEST(Partition, ABigHeadTakesLayersOffTheLastStage) {
  const auto r = partition_layers(model(16, 64, 50257), 4);  // the head costs ~49 blocks
  EXPECT_EQ(r.back().end - r.back().begin, 1) << describe(r, 4);
}

TEST(Partition, OptimalAgainstBruteForce) {
  // Uniform blocks, and blocks of falling expected cost under stochastic depth.
  for (int layers = 1; layers <= 12; ++layers) {
    for (int chunks = 1; chunks <= std::min(layers, 4); ++chunks) {
      for (int vocab : {64, 4096, 65536}) {
        for (double drop : {0.0, 0.5}) {
          ModelConfig m = model(layers, 32, vocab);
          m.stochastic_depth = drop;
          const auto ours = partition_layers(m, chunks);
          // Every composition of `layers` into `chunks` positive parts.
          double best = 1e300;
          std::vector<int> counts(static_cast<size_t>(chunks));
          std::function<void(int, int)> visit = [&](int k, int left) {
            if (k == chunks - 1) {
              counts[static_cast<size_t>(k)] = left;
              std::vector<LayerRange> r;
              int b = 0;
              for (int n : counts) { r.push_back({b, b + n}); b += n; }
              best = std::min(best, max_cost(m, r));
              return;
            }
            for (int n = 1; n <= left - (chunks - k - 1); ++n) {
              counts[static_cast<size_t>(k)] = n;
              visit(k + 1, left - n);
            }
          };
          visit(0, layers);
          ASSERT_NEAR(max_cost(m, ours), best, 1e-6 * best)
              << layers << " layers, " << chunks << " chunks, drop " << drop;
        }
      }
    }
  }
}

TEST(Partition, SkippedStochasticDepthMovesBlocksToTheEnd) {
  // Linear-decay drop probability up to p_L = 0.5 on 128 pre-norm blocks: a block's expected cost
  // falls from ~1 to 0.5 with depth, so the later stages hold more blocks; the expected FLOPs of
  // the four stages (formula: sum over the stage's l of 1 - 0.5 (l + 1) / 128) stay within one block.
  ModelConfig m = model(128, 64, 64);
  m.stochastic_depth = 0.5;
  const auto r = partition_layers(m, 4);
  EXPECT_GT(r[3].end - r[3].begin, r[0].end - r[0].begin + 8) << describe(r, 4);
  std::vector<double> expected;
  for (const LayerRange& range : r) {
    double sum = 0;
    for (int l = range.begin; l < range.end; ++l) sum += 1.0 - 0.5 * (l + 1) / 128.0;
    expected.push_back(sum);
  }
  EXPECT_LT(*std::max_element(expected.begin(), expected.end()) - *std::min_element(expected.begin(), expected.end()),
            1.0) << describe(r, 4);
  // Post-norm computes and zeroes a dropped branch: every block costs the same, the split is even.
  m.residual = Residual::kPostNorm;
  for (const LayerRange& range : partition_layers(m, 4)) EXPECT_EQ(range.end - range.begin, 32);
}

TEST(Partition, ExplicitCountsAreCheckedAndUsed) {
  const auto r = partition_layers(model(10, 32, 64), 3, {2, 5, 3});
  EXPECT_EQ(r[1].begin, 2);
  EXPECT_EQ(r[1].end, 7);
  EXPECT_THROW(partition_layers(model(10, 32, 64), 3, {2, 5, 2}), UserError);
  EXPECT_THROW(partition_layers(model(10, 32, 64), 3, {0, 5, 5}), UserError);
  EXPECT_THROW(partition_layers(model(2, 32, 64), 4), UserError);
}

}  // namespace
}  // namespace kl::pipeline
