// The two config readers (Boost.Program_options, and the built-in one that builds without Boost use)
// give the same answers: the same effective config for every file and override form, and an error
// for the same inputs, naming the same key. Built where Boost is, so both readers exist.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/config/config.h"
#include "src/util/error.h"

namespace kl {
namespace {

struct Outcome {
  std::string ini;    // the effective config, when read
  std::string error;  // the message, when refused
};

template <class Read>
Outcome outcome(Read read) {
  try {
    return {read().to_ini(), ""};
  } catch (const UserError& e) {
    return {"", e.what()};
  }
}

struct Both {
  Outcome boost, builtin;
};

Both read_both(const std::string& text, const std::vector<std::string>& overrides) {
  return {outcome([&] { return load_config_text(text, "test.ini", overrides); }),
          outcome([&] { return load_config_text_builtin(text, "test.ini", overrides); })};
}

std::string describe(const std::string& text, const std::vector<std::string>& overrides) {
  std::string args;
  for (const auto& o : overrides) args += " " + o;
  return "text: [" + text + "] overrides:" + args;
}

// Both readers read the input, to the same effective config.
void expect_read(const std::string& text, const std::vector<std::string>& overrides) {
  SCOPED_TRACE(describe(text, overrides));
  const Both both = read_both(text, overrides);
  EXPECT_EQ(both.boost.error, "");
  EXPECT_EQ(both.builtin.error, "");
  EXPECT_EQ(both.builtin.ini, both.boost.ini);
}

// Both readers refuse the input; a message that names `key` (when given) in both.
void expect_refused(const std::string& text, const std::vector<std::string>& overrides, const std::string& key) {
  SCOPED_TRACE(describe(text, overrides));
  const Both both = read_both(text, overrides);
  EXPECT_NE(both.boost.error, "");
  EXPECT_NE(both.builtin.error, "");
  EXPECT_NE(both.boost.error.find(key), std::string::npos) << both.boost.error;
  EXPECT_NE(both.builtin.error.find(key), std::string::npos) << both.builtin.error;
}

TEST(ConfigReaders, ReadTheSameValues) {
  expect_read("", {});
  expect_read("[model]\nlayers = 7\nd_model = 64\n  heads=4  # a comment\n\n# only a comment\n[train]\nlr = 2e-3\n",
              {});
  expect_read("[model]\nlayers = 7\n", {"--model.layers=9", "--train.steps", "33", "--train.lr=+0.5"});
  expect_read("[model]\ntie_embeddings = off\ndropout = .25\n[run]\ntf32 = YES\ndevice = cuda\n", {});
  expect_read("[model]\ntie_embeddings =\n", {});  // an empty bool reads as true
  expect_read("[data]\ntrain = a b,c*.bin\nval =\n", {"--data.val", "x.bin"});
  expect_read("[train]\nseed = +12\n", {"--train.warmup=0"});
  // A prefix that names one key on the command line (Boost's default allow_guessing).
  expect_read("", {"--train.eval_bat=2"});
  // The command line wins, and the file's line for that key is not even converted.
  expect_read("[model]\nlayers = many\n", {"--model.layers=3"});
  expect_read("[model]\nlayers = 2\nlayers = 3\n", {"--model.layers=4"});
  // Every config the project ships.
  for (const auto& file : std::filesystem::directory_iterator(std::filesystem::path(KL_SOURCE_DIR) / "configs")) {
    if (file.path().extension() != ".ini") continue;
    std::ifstream in(file.path());
    std::ostringstream text;
    text << in.rdbuf();
    // Their data and checkpoint paths need not exist: reading does not look. (A build without HDF5
    // refuses those that ask for checkpoints or diagnostics: then both readers must.)
    SCOPED_TRACE(file.path().string());
    const Both both = read_both(text.str(), {});
    EXPECT_EQ(both.builtin.ini, both.boost.ini);
    EXPECT_EQ(both.builtin.error, both.boost.error);
  }
}

TEST(ConfigReaders, RefuseTheSameInputs) {
  expect_refused("[model]\nlayerz = 3\n", {}, "model.layerz");
  expect_refused("layers = 3\n", {}, "layers");
  expect_refused("", {"--train.stepz=3"}, "train.stepz");
  expect_refused("[model]\nlayers = many\n", {}, "model.layers");
  expect_refused("[model]\nlayers = 3.5\n", {}, "model.layers");
  expect_refused("[model]\nlayers = 99999999999999\n", {}, "model.layers");
  expect_refused("[model]\nlayers = +-3\n", {}, "model.layers");
  expect_refused("[model]\ntie_embeddings = perhaps\n", {}, "model.tie_embeddings");
  expect_refused("[train]\nlr = 1e\n", {}, "train.lr");
  expect_refused("[model]\nlayers = 2\nlayers = 3\n", {}, "model.layers");
  expect_refused("", {"--model.layers=2", "--model.layers=3"}, "model.layers");
  expect_refused("", {"--model.layers=x"}, "model.layers");
  expect_refused("", {"--model.layers"}, "model.layers");
  expect_refused("[model]\nlayers 3\n", {}, "");
  expect_refused("", {"model.layers=3"}, "");
  expect_refused("[model]\nlayers = 0\n", {}, "model.layers");
  expect_refused("[model]\nd_model = 100\nheads = 3\n", {}, "model.heads");
  expect_refused("[model]\nlayers = 1ew min%value%'\n", {}, "model.layers");
  expect_refused("[model]\nlayerz%canonical_option% = 3\n", {}, "unknown key");
}

}  // namespace
}  // namespace kl
