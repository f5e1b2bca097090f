#include "src/pipeline/partition.h"

#include <algorithm>
#include <numeric>

#include "src/util/error.h"

namespace kl::pipeline {

ChunkCosts chunk_costs(const ModelConfig& m) {
  const double d = m.d_model, ff = m.ff_width(), T = m.seq_len, V = m.padded_vocab();
  // Per token: 6 x (qkv 3d^2 + proj d^2 + MLP 2 d ff) for the products, 12 d T for attention.
  const double block = 6.0 * (4.0 * d * d + 2.0 * d * ff) + 12.0 * d * T;
  return {block, 6.0 * d /* embedding add, negligible but counted */, 6.0 * d * V};
}

std::vector<LayerRange> partition_layers(const ModelConfig& model, int chunks,
                                         const std::vector<int>& explicit_counts) {
  const int layers = model.layers;
  if (chunks < 1 || layers < chunks) {
    throw UserError("pipeline: " + std::to_string(layers) + " layers cannot fill " +
                    std::to_string(chunks) + " chunks (parallel.pp x parallel.virtual) with one each");
  }
  std::vector<int> counts = explicit_counts;
  if (!counts.empty()) {
    if (static_cast<int>(counts.size()) != chunks ||
        std::accumulate(counts.begin(), counts.end(), 0) != layers ||
        *std::min_element(counts.begin(), counts.end()) < 1) {
      throw UserError("pipeline: the per-chunk layer counts must be " + std::to_string(chunks) +
                      " positive numbers adding up to model.layers = " + std::to_string(layers));
    }
  } else {
    const ChunkCosts c = chunk_costs(model);
    auto cost = [&](int chunk, int blocks) {
      return blocks * c.block + (chunk == 0 ? c.first_extra : 0.0) + (chunk == chunks - 1 ? c.last_extra : 0.0);
    };
    // Greedy fill under a cap: can the blocks be cut into `chunks` pieces of cost <= cap? When yes,
    // the counts. Binary search on the cap over the finitely many block counts.
    auto fill = [&](double cap, std::vector<int>& out) {
      out.assign(static_cast<size_t>(chunks), 0);
      int left = layers;
      for (int k = 0; k < chunks; ++k) {
        const int must_leave = chunks - k - 1;  // one block for each later chunk
        int take = 1;
        while (take < left - must_leave && cost(k, take + 1) <= cap) ++take;
        if (cost(k, take) > cap) return false;
        out[static_cast<size_t>(k)] = take;
        left -= take;
      }
      return left == 0;
    };
    // The best cap is the cost of some chunk: the first, the last or a middle one (no extras).
    std::vector<double> caps;
    for (int k : {0, chunks - 1, std::min(1, chunks - 1)}) {
      for (int b = 1; b <= layers; ++b) caps.push_back(cost(k, b));
    }
    std::sort(caps.begin(), caps.end());
    caps.erase(std::unique(caps.begin(), caps.end()), caps.end());
    std::vector<int> best;
    size_t lo = 0, hi = caps.size() - 1;  // the largest cap always fits
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      std::vector<int> trial;
      if (fill(caps[mid], trial)) hi = mid; else lo = mid + 1;
    }
    KL_CHECK(fill(caps[lo], counts), "partition search failed");
  }
  std::vector<LayerRange> ranges;
  int begin = 0;
  for (int n : counts) {
    ranges.push_back({begin, begin + n});
    begin += n;
  }
  return ranges;
}

std::string describe(const std::vector<LayerRange>& ranges, int stages) {
  std::string text;
  for (size_t g = 0; g < ranges.size(); ++g) {
    text += (g ? " | " : "") + std::string("stage ") + std::to_string(static_cast<int>(g) % stages) +
            " chunk " + std::to_string(static_cast<int>(g) / stages) + ": layers " +
            std::to_string(ranges[g].begin) + "-" + std::to_string(ranges[g].end - 1) + " (" +
            std::to_string(ranges[g].end - ranges[g].begin) + ")";
  }
  return text;
}

}  // namespace kl::pipeline
