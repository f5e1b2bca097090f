// Pipeline schedules as pure functions: (kind, stage, stages, micro-batches, virtual chunks) ->
// the instruction list one stage executes, plus the number of activation buffers it needs.
// No MPI, no tensors: tests/test_schedule.cpp runs every stage's list together in a lock-step
// simulator (src/pipeline/simulator.h) and checks them.
//
// Model chunks: the layers are cut into stages x virtual chunks; stage s holds local chunk c =
// global chunk c x stages + s (Megatron's interleaving; virtual = 1 is the plain contiguous split).
// Activations flow from global chunk g to g + 1, gradients back from g + 1 to g.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "src/config/config.h"

namespace kl::pipeline {

// ScheduleKind and its names (name_of) are config's (src/config/config.h).
ScheduleKind parse_schedule_kind(const std::string& name);  // throws std::invalid_argument

struct LoadMicroBatch { int mb; };          // inputs on the first chunk, targets on the last
struct Forward { int mb, chunk; };
struct Backward { int mb, chunk; };         // input and weight gradients together
struct BackwardInput { int mb, chunk; };    // zb1: the input gradient only (on the critical path)
struct BackwardWeight { int mb, chunk; };   // zb1: the weight gradient, deferred into the bubble
struct SendActivation { int mb, chunk; };   // to global chunk g + 1
struct RecvActivation { int mb, chunk; };   // from global chunk g - 1
struct SendGrad { int mb, chunk; };         // to global chunk g - 1
struct RecvGrad { int mb, chunk; };         // from global chunk g + 1
struct ReduceGrads {};                      // data-parallel gradient reduction of this stage
struct OptimizerStep {};

using Instruction = std::variant<LoadMicroBatch, Forward, Backward, BackwardInput, BackwardWeight,
                                 SendActivation, RecvActivation, SendGrad, RecvGrad, ReduceGrads,
                                 OptimizerStep>;

struct Schedule {
  std::vector<Instruction> instructions;
  int buffers = 0;  // activation buffers this stage needs: most micro-batch chunks held at once
};

// Throws std::invalid_argument for an impossible request (stage out of range, virtual != 1 for a
// non-interleaved kind, interleaved with micro-batches not a multiple of stages).
Schedule make_schedule(ScheduleKind kind, int stage, int stages, int micro_batches, int virtual_chunks);
// Every stage's, in stage order: the same lists, built once (zb1 lays all stages out together, so
// asking per stage repeats that work stages times).
std::vector<Schedule> make_schedules(ScheduleKind kind, int stages, int micro_batches, int virtual_chunks);

// The bubble share of a step these schedules reach with equal costs per chunk (F = 1, B = 2 with
// the weight part W = 1 of it): (p-1)/(m+p-1) for gpipe and 1f1b, (p-1)/(v m + p-1) for
// interleaved (Narayanan et al. 2021, m a multiple of p), (p-1)/(3m + p-1) for zb1 with m >= p
// (Qi et al. 2023, ZB-H1: (p-1)(F+B-W) against m(F+B+W)).
double theoretical_bubble(ScheduleKind kind, int stages, int micro_batches, int virtual_chunks);

std::string to_string(const Instruction& instruction);

}  // namespace kl::pipeline
