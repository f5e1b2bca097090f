// The planner (src/plan/): the timed simulation against steps computed by hand and against the
// closed-form bubbles, the cost formulas against hand arithmetic, the memory model against the
// stage's real allocation, the calibration file's validation, and the search's refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "models/backend.h"
#include "src/pipeline/simulator.h"
#include "src/pipeline/stage.h"
#include "src/plan/calibration.h"
#include "src/plan/cost_model.h"
#include "src/plan/plan.h"
#include "src/plan/timed_sim.h"
#include "src/util/error.h"

namespace kl::plan {
namespace {

using pipeline::make_schedules;

// GPT-2 medium's shape (24 layers, d_model 1024, 16 heads, T 1024, vocab 50304).
ModelConfig gpt2_medium() {
  ModelConfig m;
  m.layers = 24;
  m.d_model = 1024;
  m.heads = 16;
  m.seq_len = 1024;
  m.vocab = 50304;
  return m;
}

// Every stage alike: per chunk F, B (input part), W (weight part); every message `transfer` s.
StepCosts uniform(int p, int v, double F, double B, double W, double transfer) {
  StepCosts c;
  for (int s = 0; s < p; ++s) {
    StageCosts sc;
    sc.forward.assign(static_cast<size_t>(v), F);
    sc.backward_input.assign(static_cast<size_t>(v), B);
    sc.backward_weight.assign(static_cast<size_t>(v), W);
    c.stages.push_back(sc);
  }
  c.send_up.assign(static_cast<size_t>(p), transfer);
  c.send_down.assign(static_cast<size_t>(p), transfer);
  return c;
}

// make_schedules (every stage at once, zb1 laid out once) gives each stage make_schedule's list.
// The presets' peak is the datasheet's dense rate of the run's precision (H100/H200 SXM: BF16 989,
// TF32 494, FP32 67 TFLOP/s), so an fp32 plan is not priced at the bf16 rate.
TEST(PlanPreset, PeakFollowsPrecision) {
  for (const char* name : {"h100", "h200"}) {
    EXPECT_DOUBLE_EQ(preset(name, Precision::kBf16, false)->peak_flops, 989e12) << name;
    EXPECT_DOUBLE_EQ(preset(name, Precision::kFp32, true)->peak_flops, 494e12) << name;
    EXPECT_DOUBLE_EQ(preset(name, Precision::kFp32, false)->peak_flops, 67e12) << name;
  }
  EXPECT_FALSE(preset("a100", Precision::kBf16, false).has_value());
}

TEST(PlanTimedSim, AllStagesAtOnceAreEachStagesList) {
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kZB1, ScheduleKind::kInterleaved}) {
    for (int p = 1; p <= 4; ++p) {
      const int v = kind == ScheduleKind::kInterleaved ? 2 : 1, m = 2 * p;
      const auto all = make_schedules(kind, p, m, v);
      ASSERT_EQ(all.size(), static_cast<size_t>(p));
      for (int s = 0; s < p; ++s) {
        const pipeline::Schedule one = pipeline::make_schedule(kind, s, p, m, v);
        EXPECT_EQ(all[static_cast<size_t>(s)].buffers, one.buffers);
        ASSERT_EQ(all[static_cast<size_t>(s)].instructions.size(), one.instructions.size());
        for (size_t i = 0; i < one.instructions.size(); ++i) {
          EXPECT_EQ(pipeline::to_string(all[static_cast<size_t>(s)].instructions[i]), pipeline::to_string(one.instructions[i]));
        }
      }
    }
  }
}

// Two stages, two micro-batches, F = 1, B = 2, W = 3 per chunk and 0.5 s per message: each
// schedule's step worked out by hand, instruction by instruction (the comments give the times).
TEST(PlanTimedSim, GPipeByHand) {
  // stage 0: F0 [0,1] F1 [1,2]; grads arrive 9, 14: B0 [9,14] B1 [14,19].
  // stage 1: activations arrive 1.5, 2.5: F0 [1.5,2.5] F1 [2.5,3.5] B0 [3.5,8.5] B1 [8.5,13.5];
  // its last grad arrives at 14. Waits: stage 0 7, stage 1 1.5 + 0.5 (its sends).
  const StepTimeline t = simulate_step(make_schedules(ScheduleKind::kGPipe, 2, 2, 1), 1, uniform(2, 1, 1, 2, 3, 0.5));
  ASSERT_EQ(t.error, "");
  EXPECT_DOUBLE_EQ(t.step_time, 19.0);
  EXPECT_DOUBLE_EQ(t.passes_time, 19.0);
  EXPECT_DOUBLE_EQ(t.bubble, 1.0 - 24.0 / 38.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[0], 7.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[1], 2.0);
  EXPECT_DOUBLE_EQ(t.p2p_wait_share, 9.0 / 38.0);
  EXPECT_EQ(t.peak_buffers, (std::vector<int>{2, 2}));
}

TEST(PlanTimedSim, OneFOneBByHand) {
  // stage 0: F0 [0,1] F1 [1,2] (its message queues behind F0's: arrives 2.5); grads arrive 8, 14:
  // B0 [8,13] B1 [14,19]. stage 1: F0 [1.5,2.5] B0 [2.5,7.5] F1 [7.5,8.5] B1 [8.5,13.5].
  const StepTimeline t = simulate_step(make_schedules(ScheduleKind::k1F1B, 2, 2, 1), 1, uniform(2, 1, 1, 2, 3, 0.5));
  ASSERT_EQ(t.error, "");
  EXPECT_DOUBLE_EQ(t.step_time, 19.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[0], 6.0 + 1.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[1], 1.5 + 0.5);
  EXPECT_EQ(t.peak_buffers, (std::vector<int>{2, 1}));
}

TEST(PlanTimedSim, ZeroBubbleByHand) {
  // stage 1: F0 [1.5,2.5] B0 [2.5,4.5] (grad arrives 5) F1 [4.5,5.5] B1 [5.5,7.5] (arrives 8)
  //          W0 [7.5,10.5] W1 [10.5,13.5].
  // stage 0: F0 [0,1] F1 [1,2] B0 [5,7] W0 [7,10] B1 [10,12] W1 [12,15].
  const StepTimeline t = simulate_step(make_schedules(ScheduleKind::kZB1, 2, 2, 1), 1, uniform(2, 1, 1, 2, 3, 0.5));
  ASSERT_EQ(t.error, "");
  EXPECT_DOUBLE_EQ(t.step_time, 15.0);
  EXPECT_DOUBLE_EQ(t.bubble, 1.0 - 24.0 / 30.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[0], 3.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[1], 1.5);
  EXPECT_DOUBLE_EQ(t.p2p_wait_share, 4.5 / 30.0);
}

TEST(PlanTimedSim, InterleavedByHand) {
  // Chunks g0 (stage 0), g1 (stage 1), g2 (stage 0), g3 (stage 1); Backward = 5 per chunk.
  // stage 0: F(0,g0) [0,1] F(1,g0) [1,2] F(0,g2) [3,4] F(1,g2) [4,5] B(0,g2) [11,16] B(1,g2) [17,22]
  //          B(0,g0) [22,27] B(1,g0) [28,33]
  // stage 1: F(0,g1) [1.5,2.5] F(1,g1) [2.5,3.5] F(0,g3) [4.5,5.5] B(0,g3) [5.5,10.5]
  //          F(1,g3) [10.5,11.5] B(1,g3) [11.5,16.5] B(0,g1) [16.5,21.5] B(1,g1) [22.5,27.5]
  const StepTimeline t =
      simulate_step(make_schedules(ScheduleKind::kInterleaved, 2, 2, 2), 2, uniform(2, 2, 1, 2, 3, 0.5));
  ASSERT_EQ(t.error, "");
  EXPECT_DOUBLE_EQ(t.step_time, 33.0);
  EXPECT_DOUBLE_EQ(t.bubble, 1.0 - 48.0 / 66.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[0], 9.0);
  EXPECT_DOUBLE_EQ(t.stage_wait[1], 4.0);
}

// One stage, two micro-batches: F0 [0,1] B0 [1,6] F1 [6,7] B1 [7,12]. The reduction (4 s) starts
// with the last backward pass (7) and its last bucket (1 s) cannot start before 12: it ends at 13.
// Then the sync (0.25), the update (2) and the ZeRO gather (0.5).
TEST(PlanTimedSim, GradientReductionOverlapsTheLastBackward) {
  StepCosts costs = uniform(1, 1, 1, 2, 3, 0);
  costs.stages[0].grad_reduce = 4;
  costs.stages[0].reduce_tail = 1;
  costs.stages[0].optimizer = 2;
  costs.stages[0].gather = 0.5;
  costs.step_sync = 0.25;
  const auto lists = make_schedules(ScheduleKind::k1F1B, 1, 2, 1);
  StepTimeline t = simulate_step(lists, 1, costs);
  EXPECT_DOUBLE_EQ(t.step_time, 13 + 0.25 + 2.5);
  EXPECT_DOUBLE_EQ(t.comm_exposed, 1 + 0.5);
  EXPECT_DOUBLE_EQ(t.comm_hidden, 3);
  costs.stages[0].grad_reduce = 10;  // longer than the last pass: 17
  t = simulate_step(lists, 1, costs);
  EXPECT_DOUBLE_EQ(t.step_time, 17 + 0.25 + 2.5);
  EXPECT_DOUBLE_EQ(t.comm_exposed, 5 + 0.5);
  EXPECT_DOUBLE_EQ(t.comm_hidden, 5);
}

// Equal costs per chunk (F = B = W = 1), free messages: the bubble is theoretical_bubble's formula
// (src/pipeline/schedule.cpp) for every schedule.
TEST(PlanTimedSim, BubbleAtEqualCostsIsTheFormula) {
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m <= 12; ++m) {
      for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kZB1}) {
        if (kind == ScheduleKind::kZB1 && m < p) continue;  // the formula assumes m >= p
        const StepTimeline t = simulate_step(make_schedules(kind, p, m, 1), 1, uniform(p, 1, 1, 1, 1, 0));
        EXPECT_NEAR(t.bubble, pipeline::theoretical_bubble(kind, p, m, 1), 1e-12)
            << name_of(kind) << " p=" << p << " m=" << m;
      }
      for (int v = 2; v <= 3 && m % p == 0; ++v) {
        const StepTimeline t = simulate_step(make_schedules(ScheduleKind::kInterleaved, p, m, v), v,
                                             uniform(p, v, 1, 1, 1, 0));
        EXPECT_NEAR(t.bubble, pipeline::theoretical_bubble(ScheduleKind::kInterleaved, p, m, v), 1e-12)
            << "interleaved p=" << p << " m=" << m << " v=" << v;
      }
    }
  }
}

// With free messages and unequal F, B, W the timed simulation agrees with the lock-step one
// (src/pipeline/simulator.h, written apart): the same makespan and bubble.
TEST(PlanTimedSim, AgreesWithTheLockStepSimulatorWithoutMessages) {
  const pipeline::Costs costs{1.3, 0.7, 2.1};
  for (int p = 1; p <= 4; ++p) {
    for (int m = p; m <= 8; ++m) {
      for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kZB1, ScheduleKind::kInterleaved}) {
        const int v = kind == ScheduleKind::kInterleaved ? 2 : 1;
        if (kind == ScheduleKind::kInterleaved && m % p != 0) continue;
        const auto lists = make_schedules(kind, p, m, v);
        const pipeline::Simulation lock_step = pipeline::simulate(lists, v, costs);
        const StepTimeline timed = simulate_step(lists, v, uniform(p, v, 1.3, 0.7, 2.1, 0));
        EXPECT_NEAR(timed.step_time, lock_step.makespan, 1e-9) << name_of(kind) << " p=" << p << " m=" << m;
        EXPECT_NEAR(timed.bubble, lock_step.bubble, 1e-12);
        EXPECT_EQ(timed.peak_buffers, lock_step.peak_buffers);
      }
    }
  }
}

TEST(PlanCosts, CollectivesByHand) {
  // 1 GB over 4 ranks at 100 GB/s with 1 us per message: ring all-reduce 2 x 3/4 x 10 ms + 6 us.
  EXPECT_NEAR(all_reduce_time(1e9, 4, 100e9, 1e-6), 0.015 + 6e-6, 1e-15);
  EXPECT_NEAR(reduce_scatter_time(1e9, 4, 100e9, 1e-6), 0.0075 + 3e-6, 1e-15);
  EXPECT_NEAR(all_gather_time(1e9, 4, 100e9, 1e-6), 0.0075 + 3e-6, 1e-15);
  EXPECT_EQ(all_reduce_time(1e9, 1, 100e9, 1e-6), 0.0);
  EXPECT_NEAR(p2p_time(1e6, 1e9, 2e-6), 1e-3 + 2e-6, 1e-15);
}

ModelConfig small_model() {
  ModelConfig m;
  m.layers = 6;
  m.d_model = 16;
  m.heads = 2;
  m.seq_len = 8;
  m.vocab = 13;
  return m;
}

Model cpu_model(const ModelConfig& m, int global_batch, int micro_batch) {
  Model model;
  model.config.model = m;
  model.config.train.global_batch = global_batch;
  model.config.train.micro_batch = micro_batch;
  model.hardware.memory_bytes = 1e12;
  model.costs = flop_costs(m, micro_batch, model.hardware);
  model.costs_micro_batch = micro_batch;
  return model;
}

// The predicted activation memory of each stage is the schedule's buffer count times what the
// real Stage allocates per buffer for that stage's chunks (src/pipeline/stage_impl.h), in fp32 and
// with the CPU's bf16 activations.
TEST(PlanMemory, ActivationsMatchTheStagesAllocation) {
  for (const Precision precision : {Precision::kFp32, Precision::kBf16}) {
    SCOPED_TRACE(name_of(precision));
    const auto check = [&](auto backend) {
      using Backend = decltype(backend);
      struct Case {
        int pp, virtual_chunks;
        ScheduleKind schedule;
        Recompute recompute;
      };
      for (const Case& k : {Case{2, 1, ScheduleKind::k1F1B, Recompute::kNone}, Case{3, 1, ScheduleKind::kGPipe, Recompute::kNone},
                            Case{2, 1, ScheduleKind::kZB1, Recompute::kNone}, Case{2, 1, ScheduleKind::k1F1B, Recompute::kBlock},
                            Case{2, 2, ScheduleKind::kInterleaved, Recompute::kNone}, Case{1, 1, ScheduleKind::k1F1B, Recompute::kNone}}) {
        SCOPED_TRACE(std::string(name_of(k.schedule)) + " pp=" + std::to_string(k.pp));
        Model model = cpu_model(small_model(), 8, 2);
        model.hardware.attention_keeps_probs = false;  // the CPU Stage's flash-style attention
        model.config.run.precision = precision;
        const Layout layout{1, k.pp, k.schedule, k.virtual_chunks, 2, 4, k.recompute, 0};
        const Prediction p = predict(model, layout);
        Config c = model.config;
        c.parallel.pp = k.pp;
        c.parallel.virtual_chunks = k.virtual_chunks;
        const auto lists = make_schedules(k.schedule, k.pp, 4, k.virtual_chunks);
        for (int s = 0; s < k.pp; ++s) {
          const pipeline::Stage<Backend> stage(backend, c.model, pipeline::stage_layout(c, s), 2,
                                               lists[static_cast<size_t>(s)].buffers, k.recompute == Recompute::kBlock,
                                               k.schedule == ScheduleKind::kZB1, 1);
          EXPECT_DOUBLE_EQ(p.memory[static_cast<size_t>(s)].activations,
                           double(lists[static_cast<size_t>(s)].buffers) * double(stage.buffer_bytes()))
              << "stage " << s;
        }
      }
    };
    if (precision == Precision::kBf16) {
      check(CpuBf16Backend{});
    } else {
      check(CpuBackend<float>{});
    }
  }
}

// Priced for the CUDA backend, a block keeps the softmax P [B,NH,T,T] where the CPU keeps the
// log-sum-exp [B,NH,T], and shares a dS scratch of P's size: the difference is that formula.
TEST(PlanMemory, CudaAttentionKeepsTheSoftmax) {
  const ModelConfig m = small_model();  // heads 2, seq_len 8
  const int B = 2;
  for (const bool recompute : {false, true}) {
    const ActivationBytes cpu = activation_bytes(m, B, Precision::kFp32, recompute, false, false);
    const ActivationBytes cuda = activation_bytes(m, B, Precision::kFp32, recompute, false, true);
    const double probs = double(B) * m.heads * m.seq_len * m.seq_len * 4.0, lse = double(B) * m.heads * m.seq_len * 4.0;
    EXPECT_DOUBLE_EQ(cuda.per_block - cpu.per_block, recompute ? 0.0 : probs - lse);
    EXPECT_DOUBLE_EQ(cuda.shared - cpu.shared, probs + (recompute ? probs - lse : 0.0));
  }
}

// The FLOP model's work per token is 6N + 12 L d T up to what has no product (biases, LayerNorm,
// the position embedding: under 1% here): one rank without messages and with a free update
// reaches MFU = the efficiency.
TEST(PlanCosts, FlopModelReachesItsEfficiencyOnOneRank) {
  const ModelConfig m = gpt2_medium();
  Model model = cpu_model(m, 8, 1);
  model.hardware.memory_bandwidth = std::numeric_limits<double>::infinity();
  model.costs = flop_costs(m, 1, model.hardware);
  const Prediction p = predict(model, Layout{1, 1, ScheduleKind::k1F1B, 1, 1, 8, Recompute::kNone, 0});
  EXPECT_NEAR(p.mfu, model.hardware.compute_efficiency, 0.01 * model.hardware.compute_efficiency);
}

// ZeRO-1 overlapped (reduce-scatters during the backward pass, the all-gathers waited for by the next
// forward pass) exposes less than half the communication of the same collectives after the backward
// pass, where both are exposed whole.
TEST(PlanCosts, ZeroOverlapExposesLessThanAfterBackward) {
  const ModelConfig m = gpt2_medium();  // 1.4 GB of gradients: bandwidth, not latency, sets the collectives' times
  Model model = cpu_model(m, 8, 1);
  const Layout layout{2, 1, ScheduleKind::k1F1B, 1, 1, 4, Recompute::kNone, 1};
  model.config.parallel.overlap = false;
  const Prediction after = predict(model, layout);
  model.config.parallel.overlap = true;
  const Prediction overlapped = predict(model, layout);
  EXPECT_GT(after.timeline.comm_exposed, 0.0);
  EXPECT_LT(overlapped.timeline.comm_exposed, 0.5 * after.timeline.comm_exposed);
  EXPECT_LT(overlapped.timeline.step_time, after.timeline.step_time);
}

TEST(PlanSearch, RefusesImpossibleRequests) {
  const Model model = cpu_model(small_model(), 8, 1);
  auto message = [&](int gpus, const Constraints& c) {
    try {
      search(model, gpus, c, 3);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Constraints pp4;
  pp4.pp = 4;
  EXPECT_NE(message(6, pp4).find("--gpus 6 is not divisible by --pp 4"), std::string::npos);
  Constraints dp3;
  dp3.dp = 3;
  EXPECT_NE(message(6, dp3).find("dp must divide train.global_batch = 8"), std::string::npos);
  Constraints deep;
  deep.pp = 8;
  EXPECT_NE(message(8, deep).find("--pp 8 exceeds model.layers = 6"), std::string::npos);
  // Nothing fits in 1 kB: no layout, and the smallest named.
  Model tiny = model;
  tiny.hardware.memory_bytes = 1e3;
  const SearchResult none = search(tiny, 2, {}, 3);
  EXPECT_TRUE(none.best.empty());
  ASSERT_TRUE(none.smallest.has_value());
  EXPECT_GT(none.smallest->peak_memory, 1e3);
  EXPECT_GT(none.considered, 0);
}

// The search returns fitting layouts, fastest first, and recomputation or ZeRO-1 when only they fit.
TEST(PlanSearch, OrdersByThroughputAndRespectsMemory) {
  const Model model = cpu_model(small_model(), 8, 1);
  const SearchResult all = search(model, 4, {}, 100);
  ASSERT_GE(all.best.size(), 2u);
  for (size_t i = 1; i < all.best.size(); ++i) EXPECT_GE(all.best[i - 1].tokens_per_s, all.best[i].tokens_per_s);
  // A memory limit between the smallest and the largest layout's needs: every one kept fits.
  double least = all.best[0].peak_memory, most = least;
  for (const Prediction& p : all.best) {
    least = std::min(least, p.peak_memory);
    most = std::max(most, p.peak_memory);
  }
  Model tight = model;
  tight.hardware.memory_bytes = (least + most) / 2;
  const SearchResult some = search(tight, 4, {}, 100);
  ASSERT_FALSE(some.best.empty());
  EXPECT_LT(some.fitting, all.fitting);
  for (const Prediction& p : some.best) EXPECT_LE(p.peak_memory, tight.hardware.memory_bytes);
}

Calibration sample_calibration() {
  Calibration c;
  c.d_model = 16;
  c.heads = 2;
  c.d_ff = 64;
  c.seq_len = 8;
  c.vocab = 13;
  c.micro_batch = 2;
  c.threads = 1;
  c.forward = 1e-3;
  c.backward_input = 1.2e-3;
  c.backward_weight = 0.9e-3;
  c.head_forward = 2e-4;
  c.update_per_param = 3e-9;
  c.block_bytes = 12345;
  c.copy_bandwidth = 1e10;
  return c;
}

TEST(PlanCalibration, RoundTripsAndScales) {
  const Calibration c = sample_calibration();
  const Calibration back = parse_calibration(calibration_text(c), "test");
  EXPECT_EQ(back.d_model, 16);
  EXPECT_EQ(back.micro_batch, 2);
  EXPECT_DOUBLE_EQ(back.backward_input, 1.2e-3);
  EXPECT_DOUBLE_EQ(back.block_bytes, 12345);
  // Calibrated at 2 sequences, asked for 4: twice the time.
  const ComputeCosts k = calibrated_costs(small_model(), 4, back, "test");
  EXPECT_DOUBLE_EQ(k.block.forward, 2e-3);
  EXPECT_DOUBLE_EQ(k.head.forward, 4e-4);
}

TEST(PlanCalibration, RefusesBadFiles) {
  const std::string good = calibration_text(sample_calibration());
  auto message = [](const std::string& text) {
    try {
      parse_calibration(text, "cal.txt");
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  EXPECT_NE(message(replace("forward_s = 0.001\n", "")).find("forward_s is missing"), std::string::npos);
  EXPECT_NE(message(good + "speed = 3\n").find("unknown key 'speed'"), std::string::npos);
  EXPECT_NE(message(good + "heads = 2\n").find("heads is given more than once"), std::string::npos);
  EXPECT_NE(message(replace("forward_s = 0.001", "forward_s = -1")).find("forward_s = '-1' must be a finite number > 0"),
            std::string::npos);
  EXPECT_NE(message(replace("forward_s = 0.001", "forward_s = nan")).find("forward_s"), std::string::npos);
  EXPECT_NE(message(replace("d_model = 16", "d_model = 1.5")).find("must be a positive integer"), std::string::npos);
  EXPECT_NE(message(replace("heads = 2", "heads = 3")).find("heads = 3 does not divide d_model = 16"),
            std::string::npos);
  EXPECT_NE(message(good + "just words\n").find("cal.txt:"), std::string::npos);
  EXPECT_EQ(message(good), "no error");
  // Another model's calibration is refused by name.
  ModelConfig wider = small_model();
  wider.d_model = 32;
  try {
    calibrated_costs(wider, 2, sample_calibration(), "cal.txt");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("measured at d_model = 16, but the config's model has 32"), std::string::npos);
  }
}

}  // namespace
}  // namespace kl::plan
