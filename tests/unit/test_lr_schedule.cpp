// The learning-rate schedules (src/train/optimizer.h) against their formulas, written here again
// from the definitions in docs/sampling.md, and the property that makes a run extensible: with
// train.decay_steps set, the rates of the steps done do not depend on train.steps.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "src/config/config.h"
#include "src/train/optimizer.h"
#include "src/util/error.h"

namespace kl {
namespace {

constexpr double kPi = 3.141592653589793;

TrainConfig base(LrSchedule schedule) {
  TrainConfig t;
  t.lr = 3e-3;
  t.min_lr = 2e-4;
  t.warmup = 8;
  t.steps = 200;
  t.schedule = schedule;
  return t;
}

// Every step 0..steps+20 (past the horizon too) against `expected`.
void expect_schedule(const TrainConfig& t, const std::function<double(int64_t)>& expected) {
  for (int64_t step = 0; step < t.steps + 20; ++step) {
    ASSERT_NEAR(learning_rate(t, step), expected(step), 1e-15) << "step " << step;
  }
}

double warmup_rate(const TrainConfig& t, int64_t step) { return t.lr * double(step + 1) / double(t.warmup); }

TEST(LrSchedule, CosineFollowsItsFormula) {
  TrainConfig t = base(LrSchedule::kCosine);
  for (int64_t decay_steps : {0, 100, 500}) {
    t.decay_steps = decay_steps;
    const double horizon = decay_steps ? decay_steps : t.steps - t.warmup;
    expect_schedule(t, [&](int64_t step) {
      if (step < t.warmup) return warmup_rate(t, step);
      const double x = std::min(1.0, (step - t.warmup) / (horizon - 1));
      return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + std::cos(kPi * x));
    });
  }
  EXPECT_NEAR(learning_rate(t, t.warmup), t.lr, 1e-18);  // the decay starts at the peak
}

TEST(LrSchedule, LinearFollowsItsFormula) {
  TrainConfig t = base(LrSchedule::kLinear);
  for (int64_t decay_steps : {0, 50}) {
    t.decay_steps = decay_steps;
    const double horizon = decay_steps ? decay_steps : t.steps - t.warmup;
    expect_schedule(t, [&](int64_t step) {
      if (step < t.warmup) return warmup_rate(t, step);
      if (step - t.warmup >= horizon - 1) return t.min_lr;
      return t.lr + (t.min_lr - t.lr) * (step - t.warmup) / (horizon - 1);
    });
  }
  t.decay_steps = 0;
  EXPECT_NEAR(learning_rate(t, t.steps - 1), t.min_lr, 1e-18);  // the last step ends the decay
}

TEST(LrSchedule, ConstantFollowsItsFormula) {
  const TrainConfig t = base(LrSchedule::kConstant);
  expect_schedule(t, [&](int64_t step) { return step < t.warmup ? warmup_rate(t, step) : t.lr; });
}

TEST(LrSchedule, WsdIsWarmupStableThenLinearDecayOverTheLastFraction) {
  TrainConfig t = base(LrSchedule::kWsd);
  for (double fraction : {0.2, 0.5, 1.0, 0.0}) {
    for (int64_t decay_steps : {0, 120}) {
      t.wsd_decay_fraction = fraction;
      t.decay_steps = decay_steps;
      const int64_t horizon = decay_steps ? decay_steps : t.steps - t.warmup;
      const int64_t decaying = std::llround(fraction * horizon);
      const int64_t stable_until = t.warmup + horizon - decaying;  // first step that decays
      expect_schedule(t, [&](int64_t step) {
        if (step < t.warmup) return warmup_rate(t, step);
        if (step < stable_until || decaying == 0) return t.lr;
        const double done = std::min<double>(step - stable_until + 1, decaying);  // decay steps taken, 1..n
        return t.lr - (t.lr - t.min_lr) * done / decaying;
      });
    }
  }
  // The default: 200 steps, warmup 8, horizon 192, the last 38 decaying; the last step at min_lr.
  t = base(LrSchedule::kWsd);
  EXPECT_EQ(learning_rate(t, 200 - 38 - 1), t.lr);
  EXPECT_LT(learning_rate(t, 200 - 38), t.lr);
  EXPECT_NEAR(learning_rate(t, 199), t.min_lr, 1e-18);
}

TEST(LrSchedule, InverseSqrtFollowsItsFormula) {
  TrainConfig t = base(LrSchedule::kInverseSqrt);
  expect_schedule(t, [&](int64_t step) {
    if (step < t.warmup) return warmup_rate(t, step);
    return std::max(t.min_lr, t.lr / std::sqrt((step + 1.0) / t.warmup));
  });
  EXPECT_NEAR(learning_rate(t, t.warmup * 4 - 1), t.lr / 2, 1e-18);  // four times the warmup: half the peak
  t.warmup = 0;
  t.min_lr = 0;
  EXPECT_DOUBLE_EQ(learning_rate(t, 0), t.lr);
  EXPECT_DOUBLE_EQ(learning_rate(t, 99), t.lr / 10);
}

// With the horizon in decay_steps, a run of N steps and one of 2N give steps 1..N the same rates,
// for every schedule; with the horizon taken from train.steps, the decaying ones do not.
TEST(LrSchedule, DecayStepsMakesTheDoneStepsIndependentOfTrainSteps) {
  for (LrSchedule schedule : {LrSchedule::kCosine, LrSchedule::kLinear, LrSchedule::kConstant, LrSchedule::kWsd,
                              LrSchedule::kInverseSqrt}) {
    TrainConfig short_run = base(schedule), long_run = base(schedule);
    short_run.decay_steps = long_run.decay_steps = 300;
    long_run.steps = 2 * short_run.steps;
    EXPECT_EQ(schedule_change(short_run, long_run, short_run.steps), "") << name_of(schedule);
    for (int64_t step = 0; step < short_run.steps; ++step) {
      ASSERT_EQ(learning_rate(short_run, step), learning_rate(long_run, step));
    }
    short_run.decay_steps = long_run.decay_steps = 0;
    const std::string change = schedule_change(short_run, long_run, short_run.steps);
    const bool decays = schedule != LrSchedule::kConstant && schedule != LrSchedule::kInverseSqrt;
    EXPECT_EQ(change.empty(), !decays) << name_of(schedule) << ": " << change;
  }
  // The first step that differs is named (cosine: the first after the warmup).
  TrainConfig a = base(LrSchedule::kCosine), b = a;
  b.steps = 400;
  EXPECT_EQ(schedule_change(a, b, 200).rfind("step 10 had learning rate", 0), 0u) << schedule_change(a, b, 200);
  EXPECT_EQ(schedule_change(a, b, 9), "");  // warmup only
}

TEST(LrSchedule, ConfigKeysReadAndChecked) {
  const Config c = load_config("", {"--train.schedule=wsd", "--train.decay_steps=1000", "--train.wsd_decay_fraction=0.1"});
  EXPECT_EQ(c.train.schedule, LrSchedule::kWsd);
  EXPECT_EQ(c.train.decay_steps, 1000);
  EXPECT_EQ(c.train.wsd_decay_fraction, 0.1);
  EXPECT_EQ(Config{}.train.schedule, LrSchedule::kCosine);
  EXPECT_THROW(load_config("", {"--train.schedule=step"}), UserError);
  EXPECT_THROW(load_config("", {"--train.wsd_decay_fraction=1.5"}), UserError);
  EXPECT_THROW(load_config("", {"--train.decay_steps=-1"}), UserError);
}

}  // namespace
}  // namespace kl
