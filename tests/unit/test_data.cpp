// Token shards: valid files round-trip, every kind of broken file is refused with a message naming
// it, and sampling is a pure function of (seed, step, sample).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "src/data/dataset.h"
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
void write_raw(const fs::path& path, int32_t magic, int32_t version, int32_t count,
               const std::vector<uint16_t>& tokens) {
  int32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 2));
}

std::string open_error(const fs::path& path, int vocab = 256) {
  try {
    TokenShard shard(path.string(), vocab);
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << "message must name the file";
    return e.what();
  }
  return "";
}

TEST(Shard, RoundTrip) {
  const auto tokens = ramp(1000, 200);
  write_shard(temp("ok.bin").string(), tokens);
  TokenShard shard(temp("ok.bin").string(), 200);
  ASSERT_EQ(shard.tokens().size(), 1000u);
  EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), shard.tokens().begin()));
  EXPECT_EQ(fs::file_size(temp("ok.bin")), 1024u + 2000u);
}

TEST(Shard, RejectsBrokenFiles) {
  const auto tokens = ramp(100, 50);
  write_raw(temp("magic.bin"), 12345, 1, 100, tokens);
  EXPECT_NE(open_error(temp("magic.bin")).find("magic"), std::string::npos);
  write_raw(temp("version.bin"), kShardMagic, 7, 100, tokens);
  EXPECT_NE(open_error(temp("version.bin")).find("version"), std::string::npos);
  write_raw(temp("short.bin"), kShardMagic, 1, 200, tokens);  // header promises more than is there
  EXPECT_NE(open_error(temp("short.bin")).find("truncated"), std::string::npos);
  write_raw(temp("long.bin"), kShardMagic, 1, 50, tokens);  // trailing bytes
  EXPECT_NE(open_error(temp("long.bin")).find("bytes"), std::string::npos);
  { std::ofstream(temp("tiny.bin")) << "abc"; }
  EXPECT_NE(open_error(temp("tiny.bin")).find("header"), std::string::npos);
  write_raw(temp("negative.bin"), kShardMagic, 1, -5, {});
  EXPECT_NE(open_error(temp("negative.bin")).find("negative"), std::string::npos);
  write_shard(temp("vocab.bin").string(), ramp(100, 50));
  const std::string message = open_error(temp("vocab.bin"), 40);
  EXPECT_NE(message.find("token 40"), std::string::npos) << message;
  EXPECT_NE(message.find("model.vocab"), std::string::npos) << message;
  EXPECT_NE(open_error(temp("does_not_exist.bin")).find("cannot open"), std::string::npos);
}

TEST(Dataset, SamplingIsAPureFunction) {
  write_shard(temp("a.bin").string(), ramp(5000, 97));
  write_shard(temp("b.bin").string(), ramp(3000, 89));
  const std::string spec = temp("a.bin").string() + "," + temp("b.bin").string();
  const TokenDataset data(spec, 256, 16);
  EXPECT_EQ(data.windows(), (5000 - 16) + (3000 - 16));
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

TEST(Dataset, UnigramEntropy) {
  std::vector<uint16_t> tokens(4000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 4);  // uniform on 4
  write_shard(temp("u.bin").string(), tokens);
  EXPECT_NEAR(TokenDataset(temp("u.bin").string(), 256, 8).unigram_entropy(), std::log(4.0), 1e-12);
}

TEST(TextShards, SplitsBytesIntoTrainAndVal) {
  const auto text = temp("text.txt");
  std::ofstream(text) << std::string(999, 'a');  // + newline = 1000 bytes
  const auto summary = make_text_shards({text.string()}, temp("shards").string(), 4, 100);
  EXPECT_EQ(summary.train_tokens + summary.val_tokens, 1000);
  EXPECT_EQ(summary.val_tokens, 200);  // blocks 3 and 7 of 10
  TokenShard val((temp("shards") / "val.bin").string(), 256);
  EXPECT_EQ(val.tokens()[0], 'a');
}

}  // namespace
}  // namespace kl
