// The checkpoint index (src/checkpoint/index.h), what kilolayer reads instead of HDF5: it round-
// trips, and every damaged or hostile variant is refused with a UserError, never accepted wrongly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/checkpoint/checkpoint.h"
#include "src/checkpoint/index.h"
#include "src/util/error.h"

namespace kl::checkpoint {
namespace {

Index sample() {
  Index index;
  index.header.step = 120;
  index.header.tokens_seen = 245760;
  index.header.config = "[model]\nlayers = 4\n\n[train]\nsteps = 9\n";  // newlines inside a string
  index.header.layout = "dp=2 pp=2 schedule=1f1b virtual=1 zero=0";
  index.header.data = "train 0 tokens 33102 hash 00ff00ff00ff00ff /data/train.bin\n";
  index.header.skipped_batches = "7,12";
  index.tensors["model/wte.weight"] = {4096, 256 * 64 * 4, 0x1a2b3c4du, {256, 64}};
  index.tensors["optim/exp_avg/ln.bias"] = {70000, 64 * 4, 0xffffffffu, {64}};
  return index;
}

constexpr int64_t kBegin = 1024, kSize = 100000;

Index parse(const std::string& text) { return parse_index(text, kBegin, kSize, "checkpoint x"); }

std::string refusal(const std::string& text) {
  try {
    parse(text);
  } catch (const UserError& e) {
    return e.what();
  }
  return "accepted";
}

// The index with `from` replaced by `to` and the length line rewritten to match.
std::string edited(const std::string& from, const std::string& to) {
  std::string body = format_index(sample()).substr(kIndexLineBytes);
  const size_t at = body.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  body.replace(at, from.size(), to);
  char line[40];
  std::snprintf(line, sizeof line, "kilolayer index %012zu\n", body.size() + kIndexLineBytes);
  return line + body;
}

std::string layout_line() { return "string layout " + std::to_string(sample().header.layout.size()); }

TEST(CheckpointIndex, RoundTrips) {
  const std::string text = format_index(sample());
  EXPECT_EQ(index_length(text), static_cast<int64_t>(text.size()));
  const Index back = parse(text);
  EXPECT_EQ(back.header.format_version, kFormatVersion);
  EXPECT_EQ(back.header.step, 120);
  EXPECT_EQ(back.header.tokens_seen, 245760);
  EXPECT_EQ(back.header.config, sample().header.config);
  EXPECT_EQ(back.header.data, sample().header.data);
  EXPECT_EQ(back.header.spike_window, "");
  EXPECT_EQ(back.header.skipped_batches, "7,12");
  ASSERT_EQ(back.tensors.size(), 2u);
  const TensorEntry& w = back.tensors.at("model/wte.weight");
  EXPECT_EQ(w.offset, 4096);
  EXPECT_EQ(w.bytes, 256 * 64 * 4);
  EXPECT_EQ(w.crc, 0x1a2b3c4du);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(back.tensors.at("optim/exp_avg/ln.bias").crc, 0xffffffffu);
  // The offsets are fixed-width: the length does not depend on them.
  Index moved = sample();
  moved.tensors["model/wte.weight"].offset = 99999;
  EXPECT_EQ(format_index(moved).size(), text.size());
}

TEST(CheckpointIndex, RefusesWhatDoesNotFit) {
  EXPECT_NE(refusal(edited(" 65536 ", " 65540 ")).find("do not fit its shape"), std::string::npos);
  EXPECT_NE(refusal(edited("00000000000000004096", "00000000000000000100")).find("do not fit"), std::string::npos)
      << "inside the user block";
  EXPECT_NE(refusal(edited("00000000000000070000", "00000000000000099900")).find("do not fit"), std::string::npos)
      << "past the end of the file";
  EXPECT_NE(refusal(edited("256,64", "256,64,1,1,1,1,1,1,1")).find("a bad shape"), std::string::npos);
  EXPECT_NE(refusal(edited("256,64", "256,0")).find("a bad shape"), std::string::npos);
  EXPECT_NE(refusal(edited("256,64", "1099511627777,1")).find("a bad shape"), std::string::npos);
  EXPECT_NE(refusal(edited("model/wte.weight", "model/../wte.weight")).find("not a plain path"), std::string::npos);
  EXPECT_NE(refusal(edited("optim/exp_avg/ln.bias", "model/wte.weight")).find("listed twice"), std::string::npos);
  EXPECT_NE(refusal(edited("int format_version 3", "int format_version 2")).find("format version 2, this kilolayer reads 3"),
            std::string::npos);
  EXPECT_NE(refusal(edited(layout_line(), "string layout 99999999999")).find("claims"), std::string::npos);
  EXPECT_NE(refusal(edited(layout_line(), "string layout " + std::to_string(sample().header.layout.size() + 1))).find("malformed"), std::string::npos);
  EXPECT_NE(refusal(edited("end\n", "end\nmore\n")).find("bytes after its end"), std::string::npos);
  EXPECT_NE(refusal(edited("int step 120", "int step -1")).find("negative"), std::string::npos);
  EXPECT_NE(refusal(edited("1a2b3c4d", "1a2b3c4g")).find("not a number"), std::string::npos);
  EXPECT_NE(refusal(edited("int step 120", "int step 120 7")).find("too many fields"), std::string::npos);
}

// Every truncation and every single-byte change of a valid index either parses or is refused
// with a UserError (never a crash, an exception of another kind, or an out-of-range read, which
// the sanitizer builds of tests/fuzz would report).
TEST(CheckpointIndex, EveryDamagedCopyIsParsedOrRefused) {
  const std::string text = format_index(sample());
  int refused = 0, accepted = 0;
  auto attempt = [&](const std::string& damaged) {
    try {
      parse(damaged);
      ++accepted;
    } catch (const UserError&) {
      ++refused;
    }
  };
  for (size_t n = 0; n < text.size(); ++n) attempt(text.substr(0, n));
  for (size_t i = 0; i < text.size(); ++i) {
    for (char c : {'\0', '\n', ' ', '9', 'x', ','}) {
      std::string damaged = text;
      damaged[i] = c;
      attempt(damaged);
    }
  }
  EXPECT_GT(refused, static_cast<int>(text.size()));  // at least every truncation
  EXPECT_GT(accepted, 0);                             // a changed digit of a CRC, say, still parses
}

}  // namespace
}  // namespace kl::checkpoint

namespace kl {
namespace {

// A checkpoint saved under one depth parametrisation resumed under another is refused, naming the
// keys (the saved config is the record: model.depth_scaling and model.base_layers are in it).
TEST(CheckpointConfig, AnotherDepthParametrisationIsRefused) {
  const Config saved = load_config("", {"--model.depth_scaling=completep", "--model.base_layers=8"});
  EXPECT_EQ(checkpoint::compare_configs(saved.to_ini(), saved, "checkpoint x"), "");
  for (const auto& now : {std::vector<std::string>{"--model.depth_scaling=standard"},
                          std::vector<std::string>{"--model.depth_scaling=completep", "--model.base_layers=4"}}) {
    try {
      checkpoint::compare_configs(saved.to_ini(), load_config("", now), "checkpoint x");
      ADD_FAILURE() << "accepted " << now[0];
    } catch (const UserError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("holds another architecture than the config: model.base_layers: 8 -> "), std::string::npos)
          << what;
    }
  }
}

}  // namespace
}  // namespace kl
