// A set of token shards seen as windows of seq_len + 1 tokens (inputs and next-token targets).
// Window w of a shard starts at token w x seq_len: consecutive windows share one token (the last
// target of one is the first input of the next), so an epoch over the windows makes every token of
// a shard but its first a target exactly once (less the last < seq_len tokens, which fill no window).
//
// Training samples are a pure function of (seed, step, sample index): sample s of step k has the
// position p = k x samples_per_step + s, and is window perm_{seed, e}(p mod windows) of epoch
// e = p / windows, where perm_{seed, e} is a keyed permutation of the windows (permutation.h). So
// every epoch visits every window exactly once, any rank can produce any sample, a data-parallel or
// pipelined run sees exactly the samples of the single-process run, and the data position of a run
// is just its step (a resume needs nothing else).
//
// Opening reads headers only; a window's tokens are read when it is copied, and a token at or above
// the vocabulary found there stops the run naming the file and the position.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/data/shard.h"

namespace kl {

class TokenDataset {
 public:
  // A dataset this rank never reads (a middle pipeline stage): no shards, and asking it for a
  // batch is an internal error.
  TokenDataset() = default;
  // Opens every shard of `spec` (see expand_shard_list); throws UserError when one is invalid or
  // shorter than seq_len + 1 tokens. `samples_per_step` (the global batch) places training samples;
  // 0 for a set that only gives evaluation windows.
  TokenDataset(const std::string& spec, int vocab, int seq_len, int64_t samples_per_step = 0);

  bool opened() const { return !shards_.empty(); }
  int64_t windows() const { return window_offsets_.back(); }
  int64_t tokens() const;
  int seq_len() const { return seq_len_; }

  // The window of training sample `sample` of `step`.
  int64_t training_window(uint64_t seed, int64_t step, int64_t sample) const;

  // Fills inputs/targets [count x seq_len] with training samples first..first+count-1 of `step`.
  void training_batch(uint64_t seed, int64_t step, int64_t first, int count, int32_t* inputs,
                      int32_t* targets) const;

  // Fills inputs/targets with evaluation windows first..first+count-1 of `total` windows spread
  // evenly over the data (the same windows at every evaluation).
  void eval_batch(int64_t first, int count, int64_t total, int32_t* inputs, int32_t* targets) const;

  // Entropy of the token frequencies, in nats: the loss of the best model that ignores context,
  // the bar a language model has to clear. Counted over every token when the set holds at most
  // kUnigramSample tokens, else over kUnigramSpans spans spread evenly over the shards (a bounded
  // read whatever the data's size). Throws UserError on a token outside the vocabulary.
  double unigram_entropy() const;
  static constexpr int64_t kUnigramSample = int64_t{1} << 22;
  static constexpr int64_t kUnigramSpans = 1024;

  const std::vector<TokenShard>& shards() const { return shards_; }

 private:
  void copy_window(int64_t window, int32_t* inputs, int32_t* targets) const;
  [[noreturn]] void reject_token(size_t shard, int64_t first, int64_t count) const;

  std::vector<TokenShard> shards_;
  std::vector<int64_t> window_offsets_{0};  // prefix sums of windows per shard, size shards + 1
  int seq_len_ = 0;
  int vocab_ = 0;
  int64_t samples_per_step_ = 0;
};

}  // namespace kl
