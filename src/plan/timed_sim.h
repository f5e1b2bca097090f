// The schedules' instruction lists (src/pipeline/schedule.h) run together on a clock: an event
// simulation of one training step with the cost model's times. Each stage runs its list in order;
// a computation takes its time; a send is non-blocking and its message arrives after its
// transfer time, messages in one direction between two stages queuing on their link; a receive
// waits for its message. At ReduceGrads a stage waits for its own sends to arrive and then for
// the data-parallel reduction of its gradients, which may have started during its last backward
// pass (overlap); at OptimizerStep every stage meets (the loss and norm reductions), updates its
// parameters and, under ZeRO-1, gathers them.
#pragma once

#include <string>
#include <vector>

#include "src/pipeline/schedule.h"

namespace kl::plan {

// One stage's costs in seconds.
struct StageCosts {
  std::vector<double> forward, backward_input, backward_weight;  // per local chunk; Backward = input + weight
  double grad_reduce = 0;   // the data-parallel reduction of the stage's gradients (0 when dp = 1)
  double reduce_tail = 0;   // of it, what cannot start before the last backward pass ends (the last
                            // bucket; all of it without overlap)
  double tied_sum = 0;      // ReduceGrads: the tied embedding's two copies summed (first and last stage)
  double optimizer = 0;     // OptimizerStep: the update of the parameters this rank owns
  double gather = 0;        // ZeRO-1: the exposed part of the parameters' all-gather after the update
};

struct StepCosts {
  std::vector<StageCosts> stages;
  // Transfer seconds of one message from stage s to the next global chunk's stage ((s + 1) % p,
  // send_up[s]) and to the previous one ((s - 1 + p) % p, send_down[s]).
  std::vector<double> send_up, send_down;
  double step_sync = 0;  // the loss / preemption-flag and gradient-norm reductions
};

struct StepTimeline {
  std::string error;         // "" unless the lists deadlock
  double step_time = 0;      // seconds, the optimizer step included
  double passes_time = 0;    // when the last stage finished its last backward pass
  // The schedule's bubble: idle share of the passes, 1 - busy / (stages x passes_time) (the
  // formulas of theoretical_bubble at equal costs and free messages).
  double bubble = 0;
  // The trainer's measured "bubble": mean over stages of the time blocked on point-to-point
  // messages (receives, and the sends' completion at ReduceGrads) / step_time.
  double p2p_wait_share = 0;
  std::vector<double> stage_busy, stage_wait, stage_idle;  // per stage, seconds (idle: of step_time)
  std::vector<int> peak_buffers;                           // per stage
  // Communication seconds on the slowest stage: exposed (the stage waited for it) and hidden
  // (overlapped with computation): point-to-point transfers, gradient reductions and gathers.
  double comm_exposed = 0, comm_hidden = 0;
};

StepTimeline simulate_step(const std::vector<pipeline::Schedule>& schedules, int virtual_chunks,
                           const StepCosts& costs);

}  // namespace kl::plan
