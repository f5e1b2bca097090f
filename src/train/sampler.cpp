#include "src/train/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "src/util/error.h"
#include "src/util/rng.h"

namespace kl {

SampleOptions training_sample_options(const Config& config) {
  SampleOptions options;
  options.tokens = kSampleTokens;
  options.temperature = 0.8;
  options.top_k = std::min(40, config.model.vocab);
  options.seed = static_cast<uint64_t>(config.train.seed);
  return options;
}

int training_sample_prompt_tokens(const Config& config) {
  return std::max(1, std::min(kSamplePromptTokens, config.model.seq_len / 2));
}

void check_sample_request(const SampleOptions& options, size_t prompt_tokens, const ModelConfig& model) {
  if (!std::isfinite(options.temperature) || options.temperature < 0) {
    throw UserError("sample: --temperature must be a finite number >= 0 (0: the most likely token), got " +
                    std::to_string(options.temperature));
  }
  if (options.top_k < 0 || options.top_k > model.vocab) {
    throw UserError("sample: --top_k must be in [0, model.vocab = " + std::to_string(model.vocab) +
                    "] (0: the whole vocabulary), got " + std::to_string(options.top_k));
  }
  if (options.tokens < 0) throw UserError("sample: --tokens must be >= 0, got " + std::to_string(options.tokens));
  if (prompt_tokens == 0) throw UserError("sample: --prompt is empty (it needs at least one token)");
  if (prompt_tokens > static_cast<size_t>(model.seq_len)) {
    throw UserError("sample: --prompt encodes to " + std::to_string(prompt_tokens) +
                    " tokens, more than model.seq_len = " + std::to_string(model.seq_len) +
                    " (the model's context): shorten it");
  }
}

int32_t choose_token(std::span<const float> logits, const SampleOptions& options, int64_t index) {
  KL_CHECK(!logits.empty(), "choose_token: no logits");
  const auto vocab = static_cast<int32_t>(logits.size());
  // Candidates from the most likely down; equal logits in id order, so the order is total.
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const int32_t kept = options.temperature == 0 ? 1 : options.top_k > 0 ? std::min(options.top_k, vocab) : vocab;
  std::partial_sort(order.begin(), order.begin() + kept, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  if (kept == 1) return order[0];
  const double top = logits[order[0]];
  std::vector<double> weights(static_cast<size_t>(kept));
  double total = 0;
  for (int32_t i = 0; i < kept; ++i) {
    weights[i] = std::exp((double(logits[order[i]]) - top) / options.temperature);
    total += weights[i];
  }
  // uniform() is in (0, 1]: the first candidate whose running sum reaches u x total.
  const double target = rng::uniform(rng::key(options.seed, 0x5A3B1E), static_cast<uint64_t>(index)) * total;
  double sum = 0;
  for (int32_t i = 0; i < kept; ++i) {
    sum += weights[i];
    if (sum >= target) return order[i];
  }
  return order[kept - 1];  // rounding left the target a hair above the sum
}

std::vector<int32_t> generate(Worker& worker, Comm& pp, const ModelConfig& model, std::vector<int32_t> prompt,
                              const SampleOptions& options) {
  // Stage 0's prompt, on every stage: the last one needs its length.
  uint64_t length = prompt.size();
  pp.broadcast_bytes(std::as_writable_bytes(std::span(&length, 1)), 0);
  prompt.resize(length);
  pp.broadcast_bytes(std::as_writable_bytes(std::span(prompt)), 0);
  KL_CHECK(length >= 1 && length <= static_cast<uint64_t>(model.seq_len), "generate: the prompt does not fit");

  std::vector<int32_t> text = prompt;
  std::vector<int32_t> window(static_cast<size_t>(model.seq_len));
  const int last_stage = pp.size() - 1;
  for (int64_t i = 0; i < options.tokens; ++i) {
    const size_t context = std::min(text.size(), window.size());
    std::fill(window.begin(), window.end(), 0);  // filler after the context: any valid token
    std::copy(text.end() - static_cast<std::ptrdiff_t>(context), text.end(), window.begin());
    const std::vector<float> logits = worker.window_logits(window, static_cast<int>(context) - 1);
    int32_t token = 0;
    if (pp.rank() == last_stage) token = choose_token(logits, options, i);
    pp.broadcast_bytes(std::as_writable_bytes(std::span(&token, 1)), last_stage);
    text.push_back(token);
  }
  return std::vector<int32_t>(text.begin() + static_cast<std::ptrdiff_t>(prompt.size()), text.end());
}

namespace {
// The length of the well-formed UTF-8 sequence at text[i] (Unicode's table 3-7: no overlong forms,
// no surrogates, nothing past U+10FFFF), 0 when there is none.
size_t utf8_sequence(const std::string& text, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = at(i);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the second byte's range
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (i + length > text.size() || at(i + 1) < low || at(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  return length;
}
}  // namespace

std::string printable(const std::string& text) {
  std::string out;
  auto escape = [&out](unsigned char byte) {
    char code[8];
    std::snprintf(code, sizeof code, "\\x%02x", byte);
    out += code;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    const auto byte = static_cast<unsigned char>(ch);
    if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (byte >= 0x80) {
      // A sampled token may be a lone byte piece: valid UTF-8 passes, anything else is escaped, so
      // that logs stay UTF-8 for whatever reads them.
      if (const size_t length = utf8_sequence(text, i); length > 0) {
        out.append(text, i, length);
        i += length - 1;
      } else {
        escape(byte);
      }
    } else if (byte < 0x20 || byte == 0x7f) {
      escape(byte);
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace kl
