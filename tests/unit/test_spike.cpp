// The spike detector against the z-score written out here, its window and checkpoint text; the
// data fingerprint's verdicts on moved, grown and edited shards; data.skip_batches' parsing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "src/config/config.h"
#include "src/data/dataset.h"
#include "src/data/fingerprint.h"
#include "src/data/shard.h"
#include "src/train/spike.h"
#include "src/util/error.h"

namespace kl {
namespace {

// (x - mean) / population standard deviation, two passes in long double.
double reference_z(const std::vector<double>& window, double x) {
  long double mean = 0, variance = 0;
  for (double v : window) mean += v;
  mean /= window.size();
  for (double v : window) variance += (v - mean) * (v - mean);
  return static_cast<double>((x - mean) / std::sqrt(variance / window.size()));
}

std::vector<double> logs(std::vector<double> values) {
  for (double& v : values) v = std::log(v);
  return values;
}

TEST(Spike, JudgesTheZScoreOfTheWindowOnceItIsFull) {
  SpikeDetector detector(5.0, 4);
  const std::vector<double> losses{3.0, 2.9, 3.1, 2.8}, norms{1.0, 2.0, 3.0, 4.0};
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_FALSE(detector.judge(100.0, 100.0).spike) << "judged before the window was full";
    detector.admit(losses[i], norms[i]);
  }
  ASSERT_TRUE(detector.full());
  // The norm in log space: log 100 is (4.61 - 0.79) / 0.52 = 7.3 deviations above the window's
  // logs: a spike; 10 is 2.9: not one (in plain numbers it would be 6.7).
  SpikeVerdict v = detector.judge(3.0, 100.0);
  EXPECT_NEAR(v.norm_z, reference_z(logs(norms), std::log(100.0)), 1e-12);
  EXPECT_NEAR(v.loss_z, reference_z(losses, 3.0), 1e-12);
  EXPECT_TRUE(v.spike);
  v = detector.judge(3.0, 10.0);
  EXPECT_NEAR(v.norm_z, reference_z(logs(norms), std::log(10.0)), 1e-12);
  EXPECT_GT(reference_z(norms, 10.0), 5.0);
  EXPECT_FALSE(v.spike);
  // The loss alone: 5 sigma above, or below (a falling loss is no spike).
  EXPECT_TRUE(detector.judge(3.0 + 6 * 0.1118034, 1.0).spike);
  EXPECT_FALSE(detector.judge(0.1, 1.0).spike);
}

TEST(Spike, TheWindowSlides) {
  SpikeDetector detector(5.0, 3);
  for (double v : {100.0, 1.0, 2.0, 3.0}) detector.admit(v, v);  // 100 has left the window
  EXPECT_NEAR(detector.judge(2.0, 9.0).norm_z, reference_z(logs({1.0, 2.0, 3.0}), std::log(9.0)), 1e-12);
}

TEST(Spike, EqualValuesNeedAClearlyLargerOneToSpike) {
  SpikeDetector detector(5.0, 4);
  for (int i = 0; i < 4; ++i) detector.admit(2.0, 1.0);
  EXPECT_FALSE(detector.judge(2.0 * (1 + 1e-9), 1.0).spike);  // rounding: under the relative floor
  EXPECT_TRUE(detector.judge(2.1, 1.0).spike);
  SpikeDetector zeros(5.0, 2);
  zeros.admit(0.0, 0.0);
  zeros.admit(0.0, 0.0);
  EXPECT_FALSE(zeros.judge(0.0, 0.0).spike);
  EXPECT_TRUE(zeros.judge(0.0, 1e-20).spike);
}

TEST(Spike, CheckpointTextRestoresTheWindowBitForBit) {
  std::mt19937_64 random(7);
  std::uniform_real_distribution<double> uniform(0.5, 4.0);
  SpikeDetector detector(3.0, 16), restored(3.0, 16), smaller(3.0, 4), newest(3.0, 4);
  EXPECT_EQ(detector.save(), "");
  for (int i = 0; i < 40; ++i) {
    const double loss = uniform(random), norm = uniform(random);
    detector.admit(loss, norm);
    if (i >= 36) newest.admit(loss, norm);
  }
  restored.restore(detector.save(), "test");
  smaller.restore(detector.save(), "test");  // a smaller window keeps the newest steps
  for (int i = 0; i < 100; ++i) {
    const double loss = uniform(random) * 1.5, norm = uniform(random) * 1.5;
    const SpikeVerdict a = detector.judge(loss, norm), b = restored.judge(loss, norm);
    EXPECT_EQ(a.loss_z, b.loss_z);
    EXPECT_EQ(a.norm_z, b.norm_z);
    EXPECT_EQ(smaller.judge(loss, norm).norm_z, newest.judge(loss, norm).norm_z);
  }
  EXPECT_EQ(restored.save(), detector.save());
  restored.restore("", "test");
  EXPECT_FALSE(restored.full());
  for (const char* bad : {"loss 0x1p+0\n", "norm 0x1p+0\nloss 0x1p+0\n", "loss 0x1p+0\nnorm 0x1p+0 0x1p+0\n",
                          "loss one\nnorm 0x1p+0\n", "loss inf\nnorm 1\n", "loss 1\nnorm 1\nextra\n"}) {
    EXPECT_THROW(restored.restore(bad, "checkpoint x"), UserError) << bad;
  }
}

// The streak that train.max_skips bounds survives a restart (it is in the checkpoint's text), and a
// rollback's restore of an older checkpoint does not shorten it.
TEST(Spike, StreakTravelsInTheCheckpointText) {
  SpikeDetector detector(3.0, 4);
  for (int i = 0; i < 4; ++i) detector.admit(1.0 + 0.01 * i, 1.0);
  const std::string before = detector.save();  // a checkpoint at step 10, no streak
  EXPECT_EQ(detector.note_spike(12), 1);
  detector.note_admitted(11);  // a rollback replays step 11: not past the spike
  EXPECT_EQ(detector.note_spike(12), 2);
  const std::string during = detector.save();
  detector.restore(before, "test");  // the next rollback to step 10's checkpoint keeps the streak
  EXPECT_EQ(detector.note_spike(12), 3);

  SpikeDetector fresh(3.0, 4);  // a new process resumed from a checkpoint saved mid-streak
  fresh.restore(during, "test");
  EXPECT_EQ(fresh.save(), during);
  EXPECT_EQ(fresh.note_spike(12), 3);
  fresh.note_admitted(13);  // past the furthest spike: the streak ends
  EXPECT_EQ(fresh.note_spike(20), 1);
  for (const char* bad : {"streak 2 12\n", "loss 0x1p+0\nnorm 0x1p+0\nstreak 0 3\n",
                          "loss 0x1p+0\nnorm 0x1p+0\nstreak 2\n", "loss 0x1p+0\nnorm 0x1p+0\nstreak 2 3 4\n"}) {
    SpikeDetector other(3.0, 4);
    EXPECT_THROW(other.restore(bad, "checkpoint x"), UserError) << bad;
  }
}

TEST(Spike, SkipBatchesParse) {
  Config c;
  c.data.skip_batches = "12,7,7,300";
  EXPECT_EQ(skip_batch_list(c), (std::vector<int64_t>{7, 12, 300}));
  c.data.skip_batches = "";
  EXPECT_TRUE(skip_batch_list(c).empty());
  for (const char* bad : {"0", "7,,8", "-3", "x", "7,"}) {
    c.data.skip_batches = bad;
    EXPECT_THROW(skip_batch_list(c), UserError) << bad;
  }
}

class Fingerprint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kl_fingerprint_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    tokens_.resize(20000);
    for (size_t i = 0; i < tokens_.size(); ++i) tokens_[i] = static_cast<uint16_t>((i * 7) % 256);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string shard(const std::string& name, const std::vector<uint16_t>& tokens) {
    const std::string path = (dir_ / name).string();
    write_shard(path, tokens);
    return path;
  }
  std::string print(const std::string& train) {
    return data_fingerprint(TokenDataset(train, 256, 16), TokenDataset(shard("val.bin", tokens_), 256, 16));
  }
  std::filesystem::path dir_;
  std::vector<uint16_t> tokens_;
};

TEST_F(Fingerprint, NamesWhatChangedAndIgnoresWhereTheFilesAre) {
  const std::string saved = print(shard("a.bin", tokens_));
  EXPECT_EQ(describe_data_change(saved, print(shard("moved.bin", tokens_))), "");

  std::vector<uint16_t> edited = tokens_;
  edited[100] ^= 1;  // inside the first 4096 tokens, which are always hashed
  std::string change = describe_data_change(saved, print(shard("edited.bin", edited)));
  EXPECT_NE(change.find("data.train shard 0: "), std::string::npos) << change;
  EXPECT_NE(change.find("same length as"), std::string::npos) << change;
  EXPECT_NE(change.find("edited.bin"), std::string::npos) << change;

  std::vector<uint16_t> grown = tokens_;
  grown.resize(grown.size() + 10, 1);
  change = describe_data_change(saved, print(shard("grown.bin", grown)));
  EXPECT_NE(change.find("20000 tokens in"), std::string::npos) << change;
  EXPECT_NE(change.find("20010 in"), std::string::npos) << change;

  change = describe_data_change(saved, print(shard("a.bin", tokens_) + "," + shard("b.bin", tokens_)));
  EXPECT_NE(change.find("data.train: 1 shard(s) at the save, 2 now"), std::string::npos) << change;
  EXPECT_EQ(change.find("data.val"), std::string::npos) << change;
}

}  // namespace
}  // namespace kl
