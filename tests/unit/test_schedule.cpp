// Every pipeline schedule, for pp 1..8, micro-batches 1..16 and virtual 1..4, run through the
// lock-step simulator: sends meet receives, no deadlock, backward after forward, buffers within
// the declared count, and the simulated bubble equals the formula.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "src/pipeline/schedule.h"
#include "src/pipeline/simulator.h"

namespace kl::pipeline {
namespace {

std::vector<Schedule> all_stages(ScheduleKind kind, int p, int m, int v) {
  std::vector<Schedule> stages;
  for (int s = 0; s < p; ++s) stages.push_back(make_schedule(kind, s, p, m, v));
  return stages;
}

// Costs per chunk of F = 1, B = 2 (input part 1 + weight part 1), the formulas' assumption.
void check(ScheduleKind kind, int p, int m, int v) {
  SCOPED_TRACE(std::string(name_of(kind)) + " p=" + std::to_string(p) + " m=" + std::to_string(m) +
               " v=" + std::to_string(v));
  const auto stages = all_stages(kind, p, m, v);
  const Simulation sim = simulate(stages, v);
  ASSERT_EQ(sim.error, "");
  // The same lists on NCCL (sends that block until matched, no tags): no deadlock, no mismatch.
  // (One stage with several chunks never runs: a one-stage pipeline is 1F1B over one chunk.)
  if (p > 1 || v == 1) {
    ASSERT_EQ(check_rendezvous(stages), "");
  }
  if (kind == ScheduleKind::kZB1 && m < p) {
    // Too few micro-batches to fill the pipeline: the last one's forward and backward chains bound
    // the step (2m + 2p - 1 units), still below 1F1B's 3(m + p - 1) once p > 1.
    EXPECT_NEAR(sim.makespan, 2.0 * m + 2.0 * p - 1, 1e-9);
    EXPECT_LE(sim.bubble, theoretical_bubble(ScheduleKind::k1F1B, p, m, 1) + 1e-12);
  } else {
    EXPECT_NEAR(sim.bubble, theoretical_bubble(kind, p, m, v), 1e-12);
    EXPECT_NEAR(sim.makespan, 3.0 * m * v / (1.0 - theoretical_bubble(kind, p, m, v)), 1e-9);
  }
  for (int s = 0; s < p; ++s) {
    const int declared = stages[static_cast<size_t>(s)].buffers;
    EXPECT_EQ(sim.peak_buffers[static_cast<size_t>(s)], declared) << "stage " << s;
    switch (kind) {
      case ScheduleKind::kGPipe: EXPECT_EQ(declared, m); break;
      case ScheduleKind::k1F1B: EXPECT_EQ(declared, std::min(p - s, m)) << "stage " << s; break;
      case ScheduleKind::kZB1: EXPECT_LE(declared, std::min(2 * p - s - 1, m)) << "stage " << s; break;
      case ScheduleKind::kInterleaved:
        EXPECT_EQ(declared, std::min((p - s - 1) * 2 + (v - 1) * p + 1, m * v)) << "stage " << s;
        break;
    }
  }
}

// A send and the receive right after it go out together on NCCL; apart, two stages that each send
// first wait forever for a receive queued behind the other's send (MPI's non-blocking sends do not).
TEST(Schedule, RendezvousNeedsTheSendAndItsReceiveTogether) {
  Schedule first, second;
  first.instructions = {SendActivation{0, 0}, RecvGrad{0, 0}};
  second.instructions = {SendGrad{0, 0}, RecvActivation{0, 0}};
  EXPECT_EQ(check_rendezvous({first, second}), "");
  // Each stage waits for its send (ReduceGrads) before posting the receive the other's send needs.
  first.instructions = {SendActivation{0, 0}, ReduceGrads{}, RecvGrad{0, 0}};
  second.instructions = {SendGrad{0, 0}, ReduceGrads{}, RecvActivation{0, 0}};
  EXPECT_EQ(simulate({first, second}, 1).error, "");  // MPI's sends complete without the receive
  EXPECT_NE(check_rendezvous({first, second}).find("deadlock"), std::string::npos);
  // Without tags, the order alone pairs messages: receiving micro-batch 1 before 0 is caught.
  first.instructions = {SendActivation{0, 0}, SendActivation{1, 0}};
  second.instructions = {RecvActivation{1, 0}, RecvActivation{0, 0}};
  EXPECT_NE(check_rendezvous({first, second}).find("different messages"), std::string::npos);
}

TEST(Schedule, GPipeAnd1F1B) {
  for (int p = 1; p <= 8; ++p) {
    for (int m = 1; m <= 16; ++m) {
      check(ScheduleKind::kGPipe, p, m, 1);
      check(ScheduleKind::k1F1B, p, m, 1);
    }
  }
}

TEST(Schedule, Interleaved) {
  for (int p = 1; p <= 8; ++p) {
    for (int m = p; m <= 16; m += p) {
      for (int v = 1; v <= 4; ++v) check(ScheduleKind::kInterleaved, p, m, v);
    }
  }
}

TEST(Schedule, ZeroBubbleH1) {
  for (int p = 1; p <= 8; ++p) {
    for (int m = 1; m <= 16; ++m) check(ScheduleKind::kZB1, p, m, 1);
  }
}

TEST(Schedule, OneF1BHoldsFewerActivationsThanGPipe) {
  // The point of 1F1B: the first stage holds p micro-batches at most, GPipe all m.
  EXPECT_EQ(make_schedule(ScheduleKind::k1F1B, 0, 4, 16, 1).buffers, 4);
  EXPECT_EQ(make_schedule(ScheduleKind::kGPipe, 0, 4, 16, 1).buffers, 16);
}

TEST(Schedule, GoldenTwoStage1F1B) {
  const auto s0 = make_schedule(ScheduleKind::k1F1B, 0, 2, 2, 1).instructions;
  std::vector<std::string> text;
  for (const auto& i : s0) text.push_back(to_string(i));
  EXPECT_EQ(text, (std::vector<std::string>{
                      "LoadMicroBatch(mb 0)", "Forward(mb 0, chunk 0)", "SendActivation(mb 0, chunk 0)",
                      "LoadMicroBatch(mb 1)", "Forward(mb 1, chunk 0)", "SendActivation(mb 1, chunk 0)",
                      "RecvGrad(mb 0, chunk 0)", "Backward(mb 0, chunk 0)", "RecvGrad(mb 1, chunk 0)",
                      "Backward(mb 1, chunk 0)", "ReduceGrads", "OptimizerStep"}));
}

TEST(Schedule, SimulatorCatchesBrokenSchedules) {
  const auto stages = all_stages(ScheduleKind::k1F1B, 2, 2, 1);
  // Drop a send: the receiver waits forever.
  auto broken = stages;
  broken[0].instructions.erase(broken[0].instructions.begin() + 2);
  EXPECT_NE(simulate(broken, 1).error.find("deadlock"), std::string::npos);
  // Declare too few buffers.
  broken = stages;
  broken[0].buffers = 1;
  EXPECT_NE(simulate(broken, 1).error.find("declared"), std::string::npos);
  // Backward before forward.
  broken = stages;
  std::swap(broken[1].instructions[2], broken[1].instructions[3]);  // last stage: Backward before Forward
  EXPECT_NE(simulate(broken, 1).error.find("backward before forward"), std::string::npos);
}

TEST(Schedule, RejectsImpossibleRequests) {
  EXPECT_THROW(make_schedule(ScheduleKind::k1F1B, 2, 2, 4, 1), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::k1F1B, 0, 2, 4, 2), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::kInterleaved, 0, 4, 6, 2), std::invalid_argument);
  EXPECT_THROW(parse_schedule_kind("2f2b"), std::invalid_argument);
  EXPECT_EQ(parse_schedule_kind("zb1"), ScheduleKind::kZB1);
}

}  // namespace
}  // namespace kl::pipeline
