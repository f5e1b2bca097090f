// Token shards: valid files (GPT-2's uint16, LLaMA-3's uint32) round-trip, every kind of broken file
// is refused with a message naming it, a token outside the vocabulary is refused when read, sampling
// is a pure function of (seed, step, sample) that visits every window once per epoch, and the
// unigram baseline is exact on small sets and read from a bounded sample on large ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "src/data/dataset.h"
#include "src/data/permutation.h"
#include "src/data/shard.h"
#include "src/data/text_shards.h"
#include "src/util/error.h"

namespace kl {
namespace {

namespace fs = std::filesystem;

fs::path temp(const std::string& name) {
  return fs::temp_directory_path() / ("kl_data_" + std::to_string(::getpid()) + "_" + name);
}

std::vector<uint16_t> ramp(int n, int vocab) {
  std::vector<uint16_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<uint16_t>(i % vocab);
  return t;
}

// Writes a shard by hand so that header fields can be broken on purpose.
template <class T>
void write_raw(const fs::path& path, int32_t magic, int32_t version, int32_t count, const std::vector<T>& tokens) {
  int32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * sizeof(T)));
}

std::string open_error(const fs::path& path) {
  try {
    TokenShard shard(path.string());
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << "message must name the file";
    return e.what();
  }
  return "";
}

TEST(Shard, RoundTrip) {
  const auto tokens = ramp(1000, 200);
  write_shard(temp("ok.bin").string(), tokens);
  TokenShard shard(temp("ok.bin").string());
  ASSERT_EQ(shard.size(), 1000);
  EXPECT_EQ(shard.token_bytes(), 2);
  EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), shard.tokens<uint16_t>().begin()));
  EXPECT_EQ(fs::file_size(temp("ok.bin")), 1024u + 2000u);
}

// LLaMA-3's format: magic 20240801, version 7, uint32 tokens, written by hand as llm.c writes it.
TEST(Shard, ReadsLlama3Shards) {
  std::vector<uint32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(128000 + i);
  write_raw(temp("v7.bin"), 20240801, 7, 300, tokens);
  TokenShard shard(temp("v7.bin").string());
  EXPECT_EQ(shard.token_bytes(), 4);
  ASSERT_EQ(shard.size(), 300);
  EXPECT_EQ(shard.token(299), 128299u);
  EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), shard.tokens<uint32_t>().begin()));
  // write_shard's uint32 form is the same file.
  write_shard(temp("v7_ours.bin").string(), std::span<const uint32_t>(tokens));
  EXPECT_EQ(fs::file_size(temp("v7_ours.bin")), fs::file_size(temp("v7.bin")));
  // Windows carry the large ids through unchanged.
  const TokenDataset data(temp("v7.bin").string(), 128256, 8);
  std::vector<int32_t> in(8), tg(8);
  data.eval_batch(0, 1, 1, in.data(), tg.data());
  EXPECT_EQ(in[0], 128000);
  EXPECT_EQ(tg[7], 128008);
}

TEST(Shard, RejectsBrokenFiles) {
  const auto tokens = ramp(100, 50);
  write_raw(temp("magic.bin"), 12345, 1, 100, tokens);
  EXPECT_NE(open_error(temp("magic.bin")).find("magic"), std::string::npos);
  write_raw(temp("version.bin"), kShardMagic, 7, 100, tokens);
  EXPECT_NE(open_error(temp("version.bin")).find("version 7"), std::string::npos);
  write_raw(temp("version32.bin"), kShardMagic32, 1, 50, tokens);  // LLaMA-3's magic, GPT-2's version
  EXPECT_NE(open_error(temp("version32.bin")).find("LLaMA-3 shards are version 7"), std::string::npos);
  write_raw(temp("v7_count.bin"), kShardMagic32, 7, 100, tokens);  // 100 uint32 promised, 200 bytes there
  const std::string corrupt = open_error(temp("v7_count.bin"));
  EXPECT_NE(corrupt.find("100 tokens of 4 bytes"), std::string::npos) << corrupt;
  EXPECT_NE(corrupt.find("truncated"), std::string::npos) << corrupt;
  write_raw(temp("short.bin"), kShardMagic, 1, 200, tokens);  // header promises more than is there
  EXPECT_NE(open_error(temp("short.bin")).find("truncated"), std::string::npos);
  write_raw(temp("long.bin"), kShardMagic, 1, 50, tokens);  // trailing bytes
  EXPECT_NE(open_error(temp("long.bin")).find("bytes"), std::string::npos);
  { std::ofstream(temp("tiny.bin")) << "abc"; }
  EXPECT_NE(open_error(temp("tiny.bin")).find("header"), std::string::npos);
  write_raw<uint16_t>(temp("negative.bin"), kShardMagic, 1, -5, {});
  EXPECT_NE(open_error(temp("negative.bin")).find("negative"), std::string::npos);
  EXPECT_NE(open_error(temp("does_not_exist.bin")).find("cannot open"), std::string::npos);
}

// Opening reads no token: a token outside the vocabulary is found when its window is copied (or
// when the unigram sample reads it), named by file and position.
TEST(Dataset, TokenOutsideTheVocabularyIsRefusedWhenRead) {
  std::vector<uint16_t> tokens = ramp(200, 30);
  tokens[77] = 45;
  write_shard(temp("vocab.bin").string(), tokens);
  const TokenDataset data(temp("vocab.bin").string(), 40, 16);  // opens: nothing read yet
  std::vector<int32_t> in(16), tg(16);
  data.eval_batch(0, 1, 12, in.data(), tg.data());  // window 0: tokens 0..16, all fine
  try {
    data.eval_batch(4, 1, 12, in.data(), tg.data());  // window 4: tokens 64..80
    FAIL() << "token 45 was not refused";
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(temp("vocab.bin").string()), std::string::npos) << message;
    EXPECT_NE(message.find("token 45 at position 77"), std::string::npos) << message;
    EXPECT_NE(message.find("model.vocab = 40"), std::string::npos) << message;
  }
  EXPECT_THROW(data.unigram_entropy(), UserError);
}

TEST(Dataset, SamplingIsAPureFunction) {
  write_shard(temp("a.bin").string(), ramp(5000, 97));
  write_shard(temp("b.bin").string(), ramp(3000, 89));
  const std::string spec = temp("a.bin").string() + "," + temp("b.bin").string();
  const TokenDataset data(spec, 256, 16, 8);
  EXPECT_EQ(data.windows(), 4999 / 16 + 2999 / 16);
  std::vector<int32_t> in8(8 * 16), tg8(8 * 16), in3(3 * 16), tg3(3 * 16);
  data.training_batch(1, 4, 0, 8, in8.data(), tg8.data());
  data.training_batch(1, 4, 5, 3, in3.data(), tg3.data());  // samples 5..7 alone
  EXPECT_TRUE(std::equal(in3.begin(), in3.end(), in8.begin() + 5 * 16));
  for (int i = 0; i < 8; ++i) {  // targets are the inputs shifted by one
    for (int t = 0; t + 1 < 16; ++t) EXPECT_EQ(tg8[i * 16 + t], in8[i * 16 + t + 1]);
  }
  std::vector<int32_t> other(8 * 16);
  data.training_batch(1, 5, 0, 8, other.data(), tg8.data());
  EXPECT_NE(other, in8);
  EXPECT_THROW(TokenDataset(temp("a.bin").string(), 256, 5000), UserError);  // too short
  EXPECT_THROW(TokenDataset(temp("nothing*.bin").string(), 256, 16), UserError);
}

TEST(Permutation, IsABijectionForEverySize) {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 64ull, 1000ull, 4097ull, 65537ull}) {
    for (uint64_t key : {0ull, 12345ull}) {
      const KeyedPermutation p(key, n);
      std::vector<int> seen(n, 0);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t x = p(i);
        ASSERT_LT(x, n);
        ++seen[x];
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(n)) << "n " << n;
    }
  }
  // Not the identity, and another key gives another order.
  const KeyedPermutation a(1, 1000), b(2, 1000);
  int fixed = 0, same = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    fixed += a(i) == i;
    same += a(i) == b(i);
  }
  EXPECT_LT(fixed, 20);
  EXPECT_LT(same, 20);
}

// Every window once per epoch whatever the batch size, a new order each epoch, and every token but
// a shard's first (and its short tail) a target exactly once.
TEST(Dataset, EachEpochVisitsEveryWindowOnce) {
  write_shard(temp("e1.bin").string(), ramp(1000, 250));  // 999 / 10 = 99 windows, 9 tokens of tail
  write_shard(temp("e2.bin").string(), ramp(505, 250));   // 50 windows, 4 of tail
  const std::string spec = temp("e1.bin").string() + "," + temp("e2.bin").string();
  for (int batch : {1, 7, 149}) {
    const TokenDataset data(spec, 256, 10, batch);
    ASSERT_EQ(data.windows(), 149);
    for (int epoch = 0; epoch < 3; ++epoch) {
      std::vector<int> visits(149, 0);
      for (int64_t p = epoch * 149; p < (epoch + 1) * 149; ++p) ++visits[data.training_window(9, p / batch, p % batch)];
      EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), 149) << "batch " << batch << " epoch " << epoch;
    }
  }
  const TokenDataset data(spec, 256, 10, 149);  // one epoch a step
  std::vector<int> order0, order1;
  for (int s = 0; s < 149; ++s) {
    order0.push_back(static_cast<int>(data.training_window(9, 0, s)));
    order1.push_back(static_cast<int>(data.training_window(9, 1, s)));
  }
  EXPECT_NE(order0, order1);
  // Targets: the token values are position % 250, so (shard, position) is recoverable per window.
  std::vector<int32_t> in(149 * 10), tg(149 * 10);
  data.training_batch(9, 0, 0, 149, in.data(), tg.data());
  std::vector<int> targeted1(1000, 0), targeted2(505, 0);
  for (int s = 0; s < 149; ++s) {
    const int64_t w = data.training_window(9, 0, s);
    auto& targeted = w < 99 ? targeted1 : targeted2;
    const int64_t start = (w < 99 ? w : w - 99) * 10;
    for (int t = 0; t < 10; ++t) {
      EXPECT_EQ(tg[s * 10 + t], (start + t + 1) % 250);
      ++targeted[static_cast<size_t>(start + t + 1)];
    }
  }
  EXPECT_EQ(targeted1[0], 0);
  EXPECT_EQ(std::count(targeted1.begin() + 1, targeted1.begin() + 991, 1), 990);
  EXPECT_EQ(std::count(targeted2.begin() + 1, targeted2.begin() + 501, 1), 500);
}

TEST(Dataset, UnigramEntropy) {
  std::vector<uint16_t> tokens(4000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 4);  // uniform on 4
  write_shard(temp("u.bin").string(), tokens);
  EXPECT_NEAR(TokenDataset(temp("u.bin").string(), 256, 8).unigram_entropy(), std::log(4.0), 1e-12);
}

// Past kUnigramSample tokens the entropy comes from evenly spread spans: exact for a periodic
// text, and the spans reach into every shard (a token outside the vocabulary in the last one is
// found; the full count would find it too, but the sample must not stop before it).
TEST(Dataset, UnigramEntropyFromABoundedSample) {
  const int64_t half = TokenDataset::kUnigramSample * 3 / 4;  // two shards: 1.5 x the sample
  std::vector<uint16_t> tokens(static_cast<size_t>(half));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 8);
  write_shard(temp("big1.bin").string(), tokens);
  write_shard(temp("big2.bin").string(), tokens);
  const std::string spec = temp("big1.bin").string() + "," + temp("big2.bin").string();
  EXPECT_NEAR(TokenDataset(spec, 256, 8).unigram_entropy(), std::log(8.0), 1e-9);
  tokens.back() = 300;
  write_shard(temp("big2.bin").string(), tokens);
  EXPECT_THROW(TokenDataset(spec, 256, 8).unigram_entropy(), UserError);
}

TEST(TextShards, SplitsBytesIntoTrainAndVal) {
  const auto text = temp("text.txt");
  std::ofstream(text) << std::string(999, 'a');  // + newline = 1000 bytes
  const auto summary = make_text_shards({text.string()}, temp("shards").string(), 4, 100);
  EXPECT_EQ(summary.train_tokens + summary.val_tokens, 1000);
  EXPECT_EQ(summary.val_tokens, 200);  // blocks 3 and 7 of 10
  TokenShard val((temp("shards") / "val.bin").string());
  EXPECT_EQ(val.token(0), 'a');
}

}  // namespace
}  // namespace kl
