#include "src/pipeline/partition.h"

#include <algorithm>
#include <numeric>

#include "models/residual.h"
#include "src/util/error.h"

namespace kl::pipeline {

ChunkCosts chunk_costs(const ModelConfig& m) {
  const double d = m.d_model, ff = m.ff_width(), T = m.seq_len, V = m.padded_vocab();
  // Per token: 6 x (qkv 3d^2 + proj d^2 + MLP 2 d ff) for the products, 12 d T for attention.
  const double block = 6.0 * (4.0 * d * d + 2.0 * d * ff) + 12.0 * d * T;
  return {block, 6.0 * d /* embedding add, negligible but counted */, 6.0 * d * V};
}

double block_cost(const ModelConfig& m, const ChunkCosts& c, int layer) {
  // Stochastic depth skips a dropped block where that leaves the identity (models/block_impl.h):
  // block l then costs (1 - p_l) of a block on average, p_l = model.stochastic_depth (l + 1) / L as
  // BlockDropout::path_drop draws it. Elsewhere a dropped branch is computed and zeroed.
  if (!dropped_block_is_identity(m.residual)) return c.block;
  return (1.0 - m.stochastic_depth * (layer + 1) / m.layers) * c.block;
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
    // prefix[l]: the cost of blocks [0, l), each at its expected cost (block_cost).
    std::vector<double> prefix(static_cast<size_t>(layers) + 1, 0.0);
    for (int l = 0; l < layers; ++l) {
      prefix[static_cast<size_t>(l) + 1] = prefix[static_cast<size_t>(l)] + block_cost(model, c, l);
    }
    auto cost = [&](int chunk, int begin, int blocks) {
      return prefix[static_cast<size_t>(begin + blocks)] - prefix[static_cast<size_t>(begin)] +
             (chunk == 0 ? c.first_extra : 0.0) + (chunk == chunks - 1 ? c.last_extra : 0.0);
    };
    // Greedy fill under a cap: can the blocks be cut into `chunks` pieces of cost <= cap? When yes,
    // the counts.
    auto fill = [&](double cap, std::vector<int>& out) {
      out.assign(static_cast<size_t>(chunks), 0);
      int begin = 0;
      for (int k = 0; k < chunks; ++k) {
        const int left = layers - begin, must_leave = chunks - k - 1;  // one block for each later chunk
        int take = 1;
        while (take < left - must_leave && cost(k, begin, take + 1) <= cap) ++take;
        if (cost(k, begin, take) > cap) return false;
        out[static_cast<size_t>(k)] = take;
        begin += take;
      }
      return begin == layers;
    };
    // Bisection on the cap: the whole model always fits under its total cost; the smallest cap that
    // fits is some chunk's cost, reached to within rounding.
    double lo = 0.0, hi = prefix.back() + c.first_extra + c.last_extra;
    std::vector<int> trial;
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
      const double mid = 0.5 * (lo + hi);
      if (fill(mid, trial)) hi = mid; else lo = mid;
    }
    KL_CHECK(fill(hi, counts), "partition search failed");
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
