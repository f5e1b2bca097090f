// The training loop end to end through the library: reproducible, and micro-batching or block
// recomputation do not change what is learned.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "comm/solo_comm.h"
#include "src/config/config.h"
#include "src/data/text_shards.h"
#include "src/train/optimizer.h"
#include "src/train/trainer.h"

namespace kl {
namespace {

namespace fs = std::filesystem;

std::string make_data() {
  // Per process: ctest runs these tests in parallel processes.
  const fs::path dir = fs::temp_directory_path() / ("kl_training_data_" + std::to_string(::getpid()));
  const fs::path text = dir / "text.txt";
  fs::create_directories(dir);
  std::ofstream out(text);
  for (int i = 0; i < 300; ++i) out << "the quick brown fox " << i % 7 << " jumps over the lazy dog.\n";
  out.close();
  make_text_shards({text.string()}, dir.string(), 5, 256);
  return dir.string();
}

Config small_config(const std::string& name, std::vector<std::string> overrides = {}) {
  static const std::string data = make_data();
  overrides.push_back("--data.train=" + data + "/train.bin");
  overrides.push_back("--data.val=" + data + "/val.bin");
  overrides.push_back("--run.dir=" +
                      (fs::temp_directory_path() / ("kl_run_" + std::to_string(::getpid()) + "_" + name)).string());
  for (const char* o : {"--model.layers=4", "--model.d_model=16", "--model.heads=2", "--model.seq_len=16",
                        "--train.steps=6", "--train.global_batch=4", "--train.warmup=2", "--train.eval_every=3",
                        "--train.eval_batches=1", "--run.threads=2"}) {
    overrides.push_back(o);
  }
  return load_config("", overrides);
}

TrainSummary train_solo(const Config& c, std::ostream& log) {
  SoloComm solo;
  return train(c, solo, log);
}

TEST(Training, IsBitwiseReproducible) {
  std::ostringstream log;
  const auto a = train_solo(small_config("repro_a", {"--train.micro_batch=2"}), log);
  const auto b = train_solo(small_config("repro_b", {"--train.micro_batch=2"}), log);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.final_val_loss, b.final_val_loss);
}

TEST(Training, MicroBatchingAndRecomputeMatchTheWholeBatch) {
  std::ostringstream log;
  const auto whole = train_solo(small_config("whole", {"--train.micro_batch=4"}), log);
  const auto micro = train_solo(small_config("micro", {"--train.micro_batch=1"}), log);
  const auto recompute =
      train_solo(small_config("recompute", {"--train.micro_batch=4", "--parallel.recompute=block"}), log);
  ASSERT_EQ(whole.losses.size(), 6u);
  for (size_t i = 0; i < whole.losses.size(); ++i) {
    EXPECT_NEAR(micro.losses[i], whole.losses[i], 1e-5 * whole.losses[i]) << "step " << i + 1;
    EXPECT_EQ(recompute.losses[i], whole.losses[i]) << "step " << i + 1;
  }
}

// One process is a one-stage 1F1B pipeline over one chunk, whatever schedule and chunks the config
// names for pp > 1: the same losses, bit for bit.
TEST(Training, OneStageIgnoresThePipelineSchedule) {
  std::ostringstream log;
  const auto plain = train_solo(small_config("one_stage", {"--train.micro_batch=2"}), log);
  const auto named = train_solo(small_config("one_stage_interleaved",
                                             {"--train.micro_batch=2", "--parallel.schedule=interleaved",
                                              "--parallel.virtual=2", "--parallel.stage_layers=3,1"}),
                                log);
  const auto gpipe = train_solo(small_config("one_stage_gpipe", {"--train.micro_batch=2", "--parallel.schedule=gpipe"}), log);
  EXPECT_EQ(named.losses, plain.losses);
  EXPECT_EQ(gpipe.losses, plain.losses);
}

TEST(Training, WritesMetricsAndEffectiveConfig) {
  std::ostringstream log;
  const Config c = small_config("metrics", {"--train.micro_batch=4", "--run.log_every=2"});
  train_solo(c, log);
  std::ifstream metrics(fs::path(c.run.dir) / "metrics.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);  // steps 2 and 4 (log_every), 3 and 6 (validation)
  for (const char* key : {"\"step\":", "\"loss\":", "\"lr\":", "\"grad_norm\":", "\"tokens_per_s\":"}) {
    EXPECT_NE(lines[0].find(key), std::string::npos) << key;
  }
  EXPECT_NE(lines.back().find("\"val_loss\":"), std::string::npos);
  EXPECT_NE(log.str().find("step 6/6"), std::string::npos);
  const Config reread = load_config((fs::path(c.run.dir) / "config.ini").string(), {});
  EXPECT_EQ(reread.to_ini(), c.to_ini());
}

TEST(LearningRate, WarmupThenCosineToMinimum) {
  TrainConfig t;
  t.lr = 1e-3;
  t.min_lr = 1e-4;
  t.warmup = 10;
  t.steps = 110;
  EXPECT_DOUBLE_EQ(learning_rate(t, 0), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(t, 4), 5e-4);
  EXPECT_DOUBLE_EQ(learning_rate(t, 9), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(t, 10), 1e-3);
  EXPECT_NEAR(learning_rate(t, 109), 1e-4, 1e-15);
  // Half way through the decay the cosine is at its midpoint.
  TrainConfig odd = t;
  odd.steps = 111;  // decay steps 10..110, midpoint at 60
  EXPECT_NEAR(learning_rate(odd, 60), 0.5 * (1e-3 + 1e-4), 1e-15);
}

}  // namespace
}  // namespace kl
