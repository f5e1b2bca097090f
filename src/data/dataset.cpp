#include "src/data/dataset.h"

#include <algorithm>
#include <cmath>

#include "src/util/error.h"
#include "src/util/rng.h"

namespace kl {

TokenDataset::TokenDataset(const std::string& spec, int vocab, int seq_len)
    : seq_len_(seq_len), vocab_(vocab) {
  window_offsets_.push_back(0);
  for (const std::string& path : expand_shard_list(spec)) {
    shards_.emplace_back(path, vocab);
    const auto count = static_cast<int64_t>(shards_.back().tokens().size());
    if (count < seq_len + 1) {
      throw UserError("data shard " + path + ": " + std::to_string(count) +
                      " tokens, fewer than model.seq_len + 1 = " + std::to_string(seq_len + 1));
    }
    window_offsets_.push_back(window_offsets_.back() + count - seq_len);
  }
}

void TokenDataset::copy_window(int64_t window, int32_t* inputs, int32_t* targets) const {
  const auto next = std::upper_bound(window_offsets_.begin(), window_offsets_.end(), window);
  const auto shard = static_cast<size_t>(next - window_offsets_.begin() - 1);
  const uint16_t* tokens = shards_[shard].tokens().data() + (window - window_offsets_[shard]);
  for (int t = 0; t < seq_len_; ++t) {
    inputs[t] = tokens[t];
    targets[t] = tokens[t + 1];
  }
}

void TokenDataset::training_batch(uint64_t seed, int64_t step, int64_t first, int count,
                                  int32_t* inputs, int32_t* targets) const {
  const uint64_t stream = rng::key(seed, 0x64617461ull /* "data" */, static_cast<uint64_t>(step));
  for (int i = 0; i < count; ++i) {
    const uint64_t window = rng::bits(stream, static_cast<uint64_t>(first + i)) %
                            static_cast<uint64_t>(windows());
    copy_window(static_cast<int64_t>(window), inputs + int64_t{i} * seq_len_,
                targets + int64_t{i} * seq_len_);
  }
}

void TokenDataset::eval_batch(int64_t first, int count, int64_t total, int32_t* inputs,
                              int32_t* targets) const {
  for (int i = 0; i < count; ++i) {
    const auto index = static_cast<__int128>(first + i) * windows() / std::max<int64_t>(total, 1);
    copy_window(static_cast<int64_t>(index) % windows(), inputs + int64_t{i} * seq_len_,
                targets + int64_t{i} * seq_len_);
  }
}

double TokenDataset::unigram_entropy() const {
  std::vector<int64_t> counts(static_cast<size_t>(vocab_), 0);
  int64_t total = 0;
  for (const auto& shard : shards_) {
    for (uint16_t token : shard.tokens()) ++counts[token];
    total += static_cast<int64_t>(shard.tokens().size());
  }
  double entropy = 0.0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(total);
    entropy -= p * std::log(p);
  }
  return entropy;
}

}  // namespace kl
