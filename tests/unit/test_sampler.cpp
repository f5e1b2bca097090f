// Sampling (src/train/sampler.h): the token choice against the softmax formula, the request checks,
// and generation against the whole model's own logits, computed with another filler after the
// context (causal attention makes it irrelevant), past seq_len, with a padded vocabulary and with
// dropout and stochastic depth configured (sampling must switch both off).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "comm/solo_comm.h"
#include "src/train/sampler.h"
#include "src/util/error.h"
#include "tests/unit/whole_model.h"

namespace kl {
namespace {

std::vector<float> some_logits() { return {0.3f, -1.2f, 2.0f, 0.9f, 2.0f, -0.4f, 1.1f, 0.0f}; }

TEST(ChooseToken, TemperatureZeroAndTopOneTakeTheMostLikelyLowestIdFirst) {
  const auto logits = some_logits();  // ids 2 and 4 tie for the maximum
  SampleOptions greedy;
  greedy.temperature = 0;
  SampleOptions top1;
  top1.top_k = 1;
  for (int64_t i = 0; i < 50; ++i) {
    greedy.seed = top1.seed = static_cast<uint64_t>(i);
    ASSERT_EQ(choose_token(logits, greedy, i), 2);
    ASSERT_EQ(choose_token(logits, top1, i), 2);
  }
}

// Frequencies over 60000 draws against softmax(logits / T) over the top k (written out here), each
// within 5 standard deviations of a binomial count; the ids outside the top k never drawn.
TEST(ChooseToken, DrawsFollowTheTemperedSoftmaxOverTheTopK) {
  const auto logits = some_logits();
  for (const int top_k : {0, 5}) {
    SampleOptions options;
    options.temperature = 0.7;
    options.top_k = top_k;
    options.seed = 42;
    const double kth = top_k ? 0.3 : -1e9;  // the 5th largest logit: 2.0, 2.0, 1.1, 0.9, 0.3
    std::vector<double> expected(logits.size(), 0.0);
    double total = 0;
    for (size_t v = 0; v < logits.size(); ++v) {
      if (logits[v] >= kth) total += expected[v] = std::exp(logits[v] / 0.7);
    }
    const int draws = 60000;
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < draws; ++i) ++counts[static_cast<size_t>(choose_token(logits, options, i))];
    for (size_t v = 0; v < logits.size(); ++v) {
      const double p = expected[v] / total, mean = draws * p, sd = std::sqrt(draws * p * (1 - p));
      if (p == 0) {
        EXPECT_EQ(counts[v], 0) << "id " << v << " is outside the top " << top_k;
      } else {
        EXPECT_NEAR(counts[v], mean, 5 * sd) << "id " << v << ", top_k " << top_k;
      }
    }
  }
}

TEST(ChooseToken, APureFunctionOfSeedAndIndex) {
  const auto logits = some_logits();
  SampleOptions a, b;
  a.seed = 1;
  b.seed = 2;
  int differ = 0;
  for (int64_t i = 0; i < 200; ++i) {
    ASSERT_EQ(choose_token(logits, a, i), choose_token(logits, a, i));
    differ += choose_token(logits, a, i) != choose_token(logits, b, i);
  }
  EXPECT_GT(differ, 50);
}

TEST(SampleRequest, EachBadInputNamesItsFlag) {
  ModelConfig m;
  m.vocab = 100;
  m.seq_len = 16;
  auto problem = [&](SampleOptions o, size_t prompt) -> std::string {
    try {
      check_sample_request(o, prompt, m);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  const SampleOptions fine;
  EXPECT_EQ(problem(fine, 16), "");
  SampleOptions o = fine;
  o.temperature = -0.5;
  EXPECT_NE(problem(o, 3).find("--temperature"), std::string::npos);
  o.temperature = std::nan("");
  EXPECT_NE(problem(o, 3).find("--temperature"), std::string::npos);
  o = fine;
  o.top_k = 101;
  EXPECT_NE(problem(o, 3).find("--top_k must be in [0, model.vocab = 100]"), std::string::npos);
  o.top_k = -1;
  EXPECT_NE(problem(o, 3).find("--top_k"), std::string::npos);
  o = fine;
  o.tokens = -2;
  EXPECT_NE(problem(o, 3).find("--tokens"), std::string::npos);
  EXPECT_NE(problem(fine, 0).find("--prompt is empty"), std::string::npos);
  EXPECT_NE(problem(fine, 17).find("17 tokens, more than model.seq_len = 16"), std::string::npos);
}

Config sampling_config() {
  Config c;
  c.model.layers = 3;
  c.model.d_model = 16;
  c.model.heads = 2;
  c.model.seq_len = 8;
  c.model.vocab = 20;
  c.model.vocab_padded = 24;        // logits of 20 ids come back, never the padding's
  c.model.dropout = 0.3;            // both off when sampling
  c.model.stochastic_depth = 0.5;
  c.train.micro_batch = 2;
  c.train.global_batch = 2;
  c.run.threads = 1;
  return c;
}

TEST(Generate, MatchesTheModelsOwnLogitsAndSlidesPastSeqLen) {
  const Config c = sampling_config();
  SoloComm solo;
  const TrainComms comms{solo, solo, solo, solo};
  const auto worker = make_worker(c, comms);
  // The reference: the same initial weights in a whole model, evaluated (no dropout) on windows
  // whose filler after the context is another token.
  test::WholeModel<float> model(c.model, 1, false);
  model.init(static_cast<uint64_t>(c.train.seed));
  const int T = c.model.seq_len, V = c.model.vocab;
  auto reference_logits = [&](const std::vector<int32_t>& text) {
    const size_t context = std::min<size_t>(text.size(), T);
    std::vector<int32_t> window(T, V - 1), targets(T, 0);
    std::copy(text.end() - static_cast<std::ptrdiff_t>(context), text.end(), window.begin());
    model.evaluate(window.data(), targets.data(), 1);
    const std::vector<float> all = model.logits();
    return std::vector<float>(all.begin() + (context - 1) * V, all.begin() + context * V);
  };

  const std::vector<int32_t> prompt = {3, 14, 15};
  std::vector<int32_t> window(T, 0);
  std::copy(prompt.begin(), prompt.end(), window.begin());
  const std::vector<float> logits = worker->window_logits(window, 2);
  ASSERT_EQ(logits.size(), size_t(V));
  const std::vector<float> expected = reference_logits(prompt);
  for (int v = 0; v < V; ++v) EXPECT_NEAR(logits[v], expected[v], 1e-5f) << v;

  SampleOptions options;
  options.tokens = 12;  // 3 + 12 > seq_len 8: the window slides
  options.temperature = 0.9;
  options.seed = 5;
  const std::vector<int32_t> generated = generate(*worker, solo, c.model, prompt, options);
  ASSERT_EQ(generated.size(), 12u);
  std::vector<int32_t> text = prompt;
  for (int i = 0; i < options.tokens; ++i) {
    const int32_t token = choose_token(reference_logits(text), options, i);
    ASSERT_EQ(generated[static_cast<size_t>(i)], token) << "token " << i << " of a text of " << text.size();
    text.push_back(token);
  }
}

// A log line stays valid UTF-8 whatever the model writes: whole sequences pass, the rest is escaped.
TEST(Printable, EscapesWhatIsNotUtf8) {
  EXPECT_EQ(printable("a\nb\tc\x01"), "a\\nb\\tc\\x01");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82");
  EXPECT_EQ(printable("\xfa\xb7x"), "\\xfa\\xb7x");            // bytes no sequence starts or continues
  EXPECT_EQ(printable("\xc3"), "\\xc3");                          // cut short
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");                  // overlong
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");          // a surrogate
  EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
}

}  // namespace
}  // namespace kl
