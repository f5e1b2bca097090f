// The option table: INI + overrides, defaults, and every kind of bad value stopping with a message
// that names the key.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/config/config.h"
#include "src/util/error.h"

namespace kl {
namespace {

std::string write_ini(const std::string& name, const std::string& text) {
  // ctest runs tests in parallel processes: the pid and a counter keep the files apart.
  static int counter = 0;
  const auto path = std::filesystem::temp_directory_path() /
                    ("kl_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name + ".ini");
  std::ofstream(path) << text;
  return path.string();
}

// The UserError message of load_config, or "" when it succeeds.
std::string error_of(const std::string& ini, const std::vector<std::string>& overrides = {}) {
  try {
    load_config(write_ini("error", ini), overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, ReadsIniAndOverridesWin) {
  const auto path = write_ini("ok", "[model]\nlayers = 7\nd_model = 64\nheads = 4\n[train]\nlr = 0.002\n");
  const Config c = load_config(path, {"--model.layers=9", "--train.steps", "33"});
  EXPECT_EQ(c.model.layers, 9);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.ff_width(), 256);
  EXPECT_EQ(c.train.steps, 33);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.002);
  EXPECT_EQ(c.model.residual, Residual::kPreNorm);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.1);
}

TEST(Config, EffectiveConfigRoundTrips) {
  const Config c = load_config(write_ini("rt", "[model]\nlayers = 5\n[train]\nlr = 0.00123\n"), {});
  const Config again = load_config(write_ini("rt2", c.to_ini()), {});
  EXPECT_EQ(again.to_ini(), c.to_ini());
  EXPECT_EQ(again.model.layers, 5);
  EXPECT_DOUBLE_EQ(again.train.lr, 0.00123);
}

TEST(Config, UnknownKeyIsNamed) {
  EXPECT_NE(error_of("[model]\nlayerz = 3\n").find("model.layerz"), std::string::npos);
  EXPECT_NE(error_of("", {"--train.stepz=3"}).find("train.stepz"), std::string::npos);
}

TEST(Config, WrongTypeIsNamed) {
  EXPECT_NE(error_of("[model]\nlayers = many\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of("[train]\nlr = fast\n").find("train.lr"), std::string::npos);
  EXPECT_NE(error_of("[model]\ntie_embeddings = perhaps\n").find("model.tie_embeddings"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayers = 99999999999999\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayers = 3.5\n").find("model.layers"), std::string::npos);
}

TEST(Config, OutOfRangeIsNamed) {
  EXPECT_NE(error_of("[model]\nlayers = 0\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayers = -4\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of("[model]\ndropout = 1.0\n").find("model.dropout"), std::string::npos);
  EXPECT_NE(error_of("[model]\nvocab = 70000000\n").find("model.vocab"), std::string::npos);
  EXPECT_NE(error_of("[train]\nlr = -0.1\n").find("train.lr"), std::string::npos);
  EXPECT_NE(error_of("[model]\nresidual = sideways\n").find("model.residual"), std::string::npos);
  EXPECT_NE(error_of("[parallel]\nrecompute = some\n").find("parallel.recompute"), std::string::npos);
}

TEST(Config, InconsistentValuesAreNamed) {
  EXPECT_NE(error_of("[model]\nd_model = 100\nheads = 3\n").find("model.heads"), std::string::npos);
  EXPECT_NE(error_of("[train]\nglobal_batch = 10\nmicro_batch = 4\n").find("train.micro_batch"),
            std::string::npos);
  EXPECT_NE(error_of("[train]\nlr = 0.001\nmin_lr = 0.01\n").find("train.min_lr"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayers = 2\n[parallel]\npp = 4\n").find("parallel.pp"), std::string::npos);
}

TEST(Config, PipelineKeysAreChecked) {
  EXPECT_NE(error_of("[parallel]\nschedule = zigzag\n").find("parallel.schedule"), std::string::npos);
  EXPECT_NE(error_of("[parallel]\nvirtual = 2\n").find("parallel.virtual"), std::string::npos);
  EXPECT_NE(error_of("[parallel]\nvirtual = 0\nschedule = interleaved\n").find("parallel.virtual"), std::string::npos);
  // 12 layers cannot fill 4 x 4 chunks.
  EXPECT_NE(error_of("[parallel]\npp = 4\nvirtual = 4\nschedule = interleaved\n").find("parallel.virtual"),
            std::string::npos);
  for (const char* bad : {"4,4,3", "4,4,4,x", "6,6,0,0", "4,,4,4", "3,3,3,4"}) {
    const std::string text = std::string("[parallel]\npp = 4\nstage_layers = ") + bad + "\n";
    EXPECT_NE(error_of(text).find("parallel.stage_layers"), std::string::npos) << bad;
  }
  const Config c = load_config("", {"--parallel.pp=4", "--parallel.stage_layers=2,4,4,2"});
  EXPECT_EQ(stage_layer_counts(c), (std::vector<int>{2, 4, 4, 2}));
  EXPECT_TRUE(stage_layer_counts(load_config("", {})).empty());
}

TEST(Config, InterleavedNeedsMicroBatchesAMultipleOfStages) {
  // 8 sequences in micro-batches of 2: 4 micro-batches, not a multiple of 3 stages.
  const Config c = load_config("", {"--parallel.pp=3", "--parallel.schedule=interleaved", "--parallel.virtual=2",
                                    "--train.global_batch=8", "--train.micro_batch=2"});
  try {
    check_layout(c, 3);
    FAIL() << "expected a layout error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.pp"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_layout(load_config("", {"--parallel.pp=2", "--parallel.schedule=interleaved",
                                                "--parallel.virtual=2", "--train.global_batch=8",
                                                "--train.micro_batch=2"}),
                               2));
}

TEST(Config, PlaceholderTextInAValueIsRefusedNotHung) {
  // Found by the config fuzzer: Boost's message for this error looped forever on "%value%".
  EXPECT_NE(error_of("[model]\nlayers = 1ew min%value%'\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayerz%canonical_option% = 3\n").find("unknown key"), std::string::npos);
}

TEST(Config, DuplicateKeyAndMissingFile) {
  EXPECT_NE(error_of("[model]\nlayers = 2\nlayers = 3\n").find("model.layers"), std::string::npos);
  EXPECT_THROW(load_config("/nonexistent/kl.ini", {}), UserError);
}

TEST(Config, LayoutMustMatchTheWorld) {
  Config c = load_config("", {});
  EXPECT_NO_THROW(check_layout(c, 1));
  try {
    check_layout(c, 4);
    FAIL() << "expected a layout error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.dp"), std::string::npos);
  }
}

TEST(Config, EffectiveConfigHasEachSectionOnce) {
  // Python's configparser (tools/export_torch.py reads a checkpoint's config) refuses a repeated
  // section; so does any strict INI reader.
  const std::string ini = load_config("", {}).to_ini();
  for (const char* section : {"[model]", "[train]", "[data]", "[parallel]", "[checkpoint]", "[run]"}) {
    const size_t first = ini.find(section);
    ASSERT_NE(first, std::string::npos) << section;
    EXPECT_EQ(ini.find(section, first + 1), std::string::npos) << section << " appears twice";
  }
}

TEST(Config, HelpListsEveryOption) {
  const std::string help = options_help();
  for (const char* key : {"model.layers", "model.dropout", "train.global_batch", "train.micro_batch",
                          "data.train", "parallel.recompute", "run.threads", "run.dir"}) {
    EXPECT_NE(help.find(key), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace kl
