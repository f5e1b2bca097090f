// Text generation from the model on any layout (`kilolayer sample`, run.sample_every).
//
// Each new token takes one forward pass, without dropout or stochastic depth, of a window of
// model.seq_len tokens: the last seq_len tokens of the prompt and what has been generated so far
// (the window slides once the text is longer), followed by filler that causal attention keeps from
// mattering. The stage that holds the head chooses the token and broadcasts it over the pipeline,
// so the first stage can embed it next. The choice is a pure function of the logits and of the
// counter-based draw (seed, token index): the same seed gives the same text on any layout, and
// sampling consumes nothing of training's randomness.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "src/config/config.h"
#include "src/pipeline/worker.h"

namespace kl {

struct SampleOptions {
  int tokens = 64;           // tokens to generate
  double temperature = 1.0;  // 0: always the most likely token
  int top_k = 0;             // draw among the k most likely tokens (0: the whole vocabulary)
  uint64_t seed = 0;
};

// What run.sample_every prints: the first kSamplePromptTokens of the first validation window
// (fewer when seq_len is short), then this many tokens drawn with these settings and train.seed.
inline constexpr int kSamplePromptTokens = 16;
inline constexpr int kSampleTokens = 32;
SampleOptions training_sample_options(const Config& config);
int training_sample_prompt_tokens(const Config& config);

// Throws UserError naming the flag when `options` are out of range for `model` (a negative or
// non-finite temperature, top_k outside [0, model.vocab], a negative token count), or when the
// prompt has no token or more than model.seq_len.
void check_sample_request(const SampleOptions& options, size_t prompt_tokens, const ModelConfig& model);

// The token that follows, given the logits of the true vocabulary: the arg max at temperature 0,
// else a draw from softmax(logits / temperature) over the top_k most likely tokens, with uniform
// number `index` of the stream keyed by options.seed.
int32_t choose_token(std::span<const float> logits, const SampleOptions& options, int64_t index);

// Collective over `pp`, the host pipeline group of `worker`: options.tokens tokens that follow
// `prompt` (stage 0's counts; at least 1 and at most model.seq_len tokens), on every stage.
std::vector<int32_t> generate(Worker& worker, Comm& pp, const ModelConfig& model, std::vector<int32_t> prompt,
                              const SampleOptions& options);

// Text for a one-line log, always valid UTF-8: newlines, tabs, other control bytes and bytes outside a
// well-formed UTF-8 sequence (a sampled lone byte piece) written as escapes.
std::string printable(const std::string& text);

}  // namespace kl
