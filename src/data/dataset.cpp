#include "src/data/dataset.h"

#include <algorithm>
#include <cmath>

#include "src/data/permutation.h"
#include "src/util/error.h"
#include "src/util/rng.h"

namespace kl {
namespace {

// Widens seq_len + 1 tokens into inputs and targets; returns the largest, checked by the caller
// once per window rather than once per token.
template <class T>
uint32_t widen(const T* tokens, int seq_len, int32_t* inputs, int32_t* targets) {
  uint32_t largest = tokens[seq_len];
  for (int t = 0; t < seq_len; ++t) {
    inputs[t] = static_cast<int32_t>(tokens[t]);
    targets[t] = static_cast<int32_t>(tokens[t + 1]);
    largest = std::max<uint32_t>(largest, tokens[t]);
  }
  return largest;
}

}  // namespace

TokenDataset::TokenDataset(const std::string& spec, int vocab, int seq_len, int64_t samples_per_step)
    : seq_len_(seq_len), vocab_(vocab), samples_per_step_(samples_per_step) {
  for (const std::string& path : expand_shard_list(spec)) {
    shards_.emplace_back(path);
    const int64_t count = shards_.back().size();
    if (count < seq_len + 1) {
      throw UserError("data shard " + path + ": " + std::to_string(count) +
                      " tokens, fewer than model.seq_len + 1 = " + std::to_string(seq_len + 1));
    }
    window_offsets_.push_back(window_offsets_.back() + (count - 1) / seq_len);
  }
}

int64_t TokenDataset::tokens() const {
  int64_t total = 0;
  for (const auto& shard : shards_) total += shard.size();
  return total;
}

void TokenDataset::reject_token(size_t shard, int64_t first, int64_t count) const {
  const TokenShard& s = shards_[shard];
  for (int64_t i = first; i < first + count; ++i) {
    if (s.token(i) >= static_cast<uint32_t>(vocab_)) {
      throw UserError("data shard " + s.path() + ": token " + std::to_string(s.token(i)) + " at position " +
                      std::to_string(i) + " is not below model.vocab = " + std::to_string(vocab_));
    }
  }
  KL_CHECK(false, "reject_token found no token out of range");
}

void TokenDataset::copy_window(int64_t window, int32_t* inputs, int32_t* targets) const {
  KL_CHECK(opened(), "a batch from a dataset this rank does not read");
  const auto next = std::upper_bound(window_offsets_.begin(), window_offsets_.end(), window);
  const auto shard = static_cast<size_t>(next - window_offsets_.begin() - 1);
  const TokenShard& s = shards_[shard];
  const int64_t first = (window - window_offsets_[shard]) * seq_len_;
  const uint32_t largest = s.token_bytes() == 2
                               ? widen(s.tokens<uint16_t>().data() + first, seq_len_, inputs, targets)
                               : widen(s.tokens<uint32_t>().data() + first, seq_len_, inputs, targets);
  if (largest >= static_cast<uint32_t>(vocab_)) reject_token(shard, first, seq_len_ + 1);
}

int64_t TokenDataset::training_window(uint64_t seed, int64_t step, int64_t sample) const {
  KL_CHECK(samples_per_step_ > 0 && opened(), "training samples from a dataset opened for evaluation only");
  const auto n = static_cast<uint64_t>(windows());
  const uint64_t position = static_cast<uint64_t>(step) * static_cast<uint64_t>(samples_per_step_) +
                            static_cast<uint64_t>(sample);
  const uint64_t epoch = position / n;
  const KeyedPermutation order(rng::key(seed, 0x65706f6368ull /* "epoch" */, epoch), n);
  return static_cast<int64_t>(order(position % n));
}

void TokenDataset::training_batch(uint64_t seed, int64_t step, int64_t first, int count,
                                  int32_t* inputs, int32_t* targets) const {
  for (int i = 0; i < count; ++i) {
    copy_window(training_window(seed, step, first + i), inputs + int64_t{i} * seq_len_,
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
  int64_t counted = 0;
  // Tokens [first, first + n) of shard s.
  auto count_span = [&](size_t s, int64_t first, int64_t n) {
    const TokenShard& shard = shards_[s];
    for (int64_t i = first; i < first + n; ++i) {
      const uint32_t token = shard.token(i);
      if (token >= static_cast<uint32_t>(vocab_)) reject_token(s, i, 1);
      ++counts[token];
    }
    counted += n;
  };
  const int64_t total = tokens();
  if (total <= kUnigramSample) {
    for (size_t s = 0; s < shards_.size(); ++s) count_span(s, 0, shards_[s].size());
  } else {
    // Span k starts at global token k x (total - span) / (spans - 1), clipped to its shard.
    const int64_t span = kUnigramSample / kUnigramSpans;
    for (int64_t k = 0; k < kUnigramSpans; ++k) {
      int64_t start = static_cast<int64_t>(static_cast<__int128>(k) * (total - span) / (kUnigramSpans - 1));
      size_t s = 0;
      while (start >= shards_[s].size()) start -= shards_[s++].size();
      count_span(s, start, std::min(span, shards_[s].size() - start));
    }
  }
  double entropy = 0.0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(counted);
    entropy -= p * std::log(p);
  }
  return entropy;
}

}  // namespace kl
