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
    worst = std::max(worst, (ranges[k].end - ranges[k].begin) * c.block + (k == 0 ? c.first_extra : 0) +
                                (k + 1 == ranges.size() ? c.last_extra : 0));
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
  for (int layers = 1; layers <= 12; ++layers) {
    for (int chunks = 1; chunks <= std::min(layers, 4); ++chunks) {
      for (int vocab : {64, 4096, 65536}) {
        const ModelConfig m = model(layers, 32, vocab);
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
        ASSERT_NEAR(max_cost(m, ours), best, 1e-6 * best) << layers << " layers, " << chunks << " chunks";
      }
    }
  }
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
