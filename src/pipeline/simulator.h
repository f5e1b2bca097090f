// A lock-step simulator that runs every stage's instruction list together and checks them: every
// send meets exactly one receive, nothing deadlocks, a chunk's backward follows its forward (and
// the weight part its input part), held activations stay within the declared buffers, and every
// forward is matched by a backward. Computations take the given costs, communication none; the
// bubble is the share of stage-time spent idle.
#pragma once

#include <string>
#include <vector>

#include "src/pipeline/schedule.h"

namespace kl::pipeline {

struct Costs {
  double forward = 1, backward_input = 1, backward_weight = 1;  // a full Backward costs both parts
};

struct Simulation {
  std::string error;  // empty when every check passed
  double makespan = 0;
  double bubble = 0;  // 1 - busy time / (stages x makespan)
  std::vector<int> peak_buffers;  // per stage
};

Simulation simulate(const std::vector<Schedule>& stages, int virtual_chunks, const Costs& costs = {});

// The same lists as the engine issues them on a communicator without tags whose sends block until
// matched (NCCL; src/pipeline/engine.h): nothing is posted ahead, a send goes out in one group with
// the receive that follows it, each stage's operations run one group after another on its stream,
// a message between two stages matches the peer's operation of the same position in their order,
// and the host waits at each receive and, at ReduceGrads, for its sends. Returns "" when every
// stage finishes and every pair matches the same message; else the first deadlock or mismatch.
std::string check_rendezvous(const std::vector<Schedule>& stages);

}  // namespace kl::pipeline
