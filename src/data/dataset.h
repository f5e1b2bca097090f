// A set of token shards seen as windows of seq_len + 1 tokens (inputs and next-token targets).
//
// Training samples are a pure function of (seed, step, sample index): sample s of step k is window
// hash(seed, k, s) mod windows. So any rank can produce any sample, a data-parallel run sees exactly
// the samples of the single-process run, and the data position of a run is just its step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/data/shard.h"

namespace kl {

class TokenDataset {
 public:
  // Opens every shard of `spec` (see expand_shard_list); throws UserError when one is invalid or
  // shorter than seq_len + 1 tokens.
  TokenDataset(const std::string& spec, int vocab, int seq_len);

  int64_t windows() const { return window_offsets_.back(); }
  int seq_len() const { return seq_len_; }

  // Fills inputs/targets [count x seq_len] with training samples first..first+count-1 of `step`.
  void training_batch(uint64_t seed, int64_t step, int64_t first, int count, int32_t* inputs,
                      int32_t* targets) const;

  // Fills inputs/targets with evaluation windows first..first+count-1 of `total` windows spread
  // evenly over the data (the same windows at every evaluation).
  void eval_batch(int64_t first, int count, int64_t total, int32_t* inputs, int32_t* targets) const;

  // Entropy of the token frequencies over all shards, in nats: the loss of the best model that
  // ignores context, the bar a language model has to clear.
  double unigram_entropy() const;

  const std::vector<TokenShard>& shards() const { return shards_; }

 private:
  void copy_window(int64_t window, int32_t* inputs, int32_t* targets) const;

  std::vector<TokenShard> shards_;
  std::vector<int64_t> window_offsets_;  // prefix sums of windows per shard, size shards + 1
  int seq_len_;
  int vocab_;
};

}  // namespace kl
