#include "src/plan/timed_sim.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

namespace kl::plan {
namespace {

using pipeline::Instruction;

struct InFlight {
  double arrival, transfer;
};

struct StageState {
  size_t pc = 0;
  double clock = 0, busy = 0, wait = 0;
  double passes_end = 0;        // end of the last computation
  double last_grad_start = 0;   // start of the last pass that adds to the weight gradients
  double sends_arrive = 0;      // when the last of this stage's messages arrives
  double link_up_free = 0, link_down_free = 0;
  double p2p_exposed = 0, p2p_hidden = 0;
  int held = 0, peak = 0;
};

// (is gradient, micro-batch, receiving global chunk) packed into one key.
uint64_t message_key(bool grad, int mb, int chunk) {
  return (uint64_t(grad) << 63) | (uint64_t(uint32_t(mb)) << 31) | uint64_t(uint32_t(chunk));
}

}  // namespace

StepTimeline simulate_step(const std::vector<pipeline::Schedule>& schedules, int chunks, const StepCosts& costs) {
  const int p = static_cast<int>(schedules.size());
  const int last = p * chunks - 1;
  std::vector<StageState> state(static_cast<size_t>(p));
  std::unordered_map<uint64_t, InFlight> in_flight;
  StepTimeline out;
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < p; ++s) {
      StageState& st = state[static_cast<size_t>(s)];
      const StageCosts& c = costs.stages[static_cast<size_t>(s)];
      const auto& list = schedules[static_cast<size_t>(s)].instructions;
      while (st.pc < list.size()) {
        const Instruction& ins = list[st.pc];
        bool blocked = false;
        auto compute = [&](double seconds) {
          st.clock += seconds;
          st.busy += seconds;
          st.passes_end = st.clock;
        };
        auto send = [&](bool grad, int mb, int to_chunk) {
          const bool up = !grad;
          const double transfer = up ? costs.send_up[static_cast<size_t>(s)] : costs.send_down[static_cast<size_t>(s)];
          double& link = up ? st.link_up_free : st.link_down_free;
          const double arrival = std::max(st.clock, link) + transfer;
          link = arrival;
          st.sends_arrive = std::max(st.sends_arrive, arrival);
          in_flight[message_key(grad, mb, to_chunk)] = {arrival, transfer};
        };
        auto receive = [&](bool grad, int mb, int chunk) {
          const auto it = in_flight.find(message_key(grad, mb, chunk * p + s));
          if (it == in_flight.end()) {
            blocked = true;
            return;
          }
          const double waited = std::max(0.0, it->second.arrival - st.clock);
          const double exposed = std::min(waited, it->second.transfer);
          st.p2p_exposed += exposed;
          st.p2p_hidden += it->second.transfer - exposed;
          st.wait += waited;
          st.clock += waited;
          in_flight.erase(it);
        };
        std::visit(
            [&](const auto& x) {
              using X = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<X, pipeline::Forward>) {
                compute(c.forward[static_cast<size_t>(x.chunk)]);
                st.peak = std::max(st.peak, ++st.held);
              } else if constexpr (std::is_same_v<X, pipeline::Backward>) {
                st.last_grad_start = st.clock;
                compute(c.backward_input[static_cast<size_t>(x.chunk)] + c.backward_weight[static_cast<size_t>(x.chunk)]);
                --st.held;
              } else if constexpr (std::is_same_v<X, pipeline::BackwardInput>) {
                compute(c.backward_input[static_cast<size_t>(x.chunk)]);
              } else if constexpr (std::is_same_v<X, pipeline::BackwardWeight>) {
                st.last_grad_start = st.clock;
                compute(c.backward_weight[static_cast<size_t>(x.chunk)]);
                --st.held;
              } else if constexpr (std::is_same_v<X, pipeline::SendActivation>) {
                if (x.chunk * p + s < last) send(false, x.mb, x.chunk * p + s + 1);
              } else if constexpr (std::is_same_v<X, pipeline::SendGrad>) {
                if (x.chunk * p + s > 0) send(true, x.mb, x.chunk * p + s - 1);
              } else if constexpr (std::is_same_v<X, pipeline::RecvActivation>) {
                receive(false, x.mb, x.chunk);
              } else if constexpr (std::is_same_v<X, pipeline::RecvGrad>) {
                receive(true, x.mb, x.chunk);
              } else if constexpr (std::is_same_v<X, pipeline::ReduceGrads>) {
                // The engine waits for its sends here; then the gradient sums.
                const double waited = std::max(0.0, st.sends_arrive - st.clock);
                st.wait += waited;
                st.clock += waited;
                if (c.grad_reduce > 0) {
                  st.clock = std::max(st.last_grad_start + c.grad_reduce, st.clock + c.reduce_tail);
                }
                st.clock += c.tied_sum;
              }
            },
            ins);
        if (blocked) break;
        ++st.pc;
        progress = true;
      }
    }
  }
  for (int s = 0; s < p; ++s) {
    const StageState& st = state[static_cast<size_t>(s)];
    if (st.pc < schedules[static_cast<size_t>(s)].instructions.size()) {
      out.error = "stage " + std::to_string(s) + ": deadlock at " +
                  pipeline::to_string(schedules[static_cast<size_t>(s)].instructions[st.pc]);
      return out;
    }
  }
  // OptimizerStep: every stage meets at the loss reduction, then updates (and gathers).
  double meet = 0, update = 0, busy = 0;
  for (int s = 0; s < p; ++s) {
    const StageState& st = state[static_cast<size_t>(s)];
    const StageCosts& c = costs.stages[static_cast<size_t>(s)];
    meet = std::max(meet, st.clock);
    update = std::max(update, c.optimizer + c.gather);
    out.passes_time = std::max(out.passes_time, st.passes_end);
    busy += st.busy;
  }
  out.step_time = meet + costs.step_sync + update;
  out.bubble = out.passes_time > 0 ? 1.0 - busy / (p * out.passes_time) : 0.0;
  double wait = 0, worst = -1;
  for (int s = 0; s < p; ++s) {
    const StageState& st = state[static_cast<size_t>(s)];
    const StageCosts& c = costs.stages[static_cast<size_t>(s)];
    out.stage_busy.push_back(st.busy);
    out.stage_wait.push_back(st.wait);
    out.stage_idle.push_back(out.step_time - st.busy - c.optimizer);
    out.peak_buffers.push_back(st.peak);
    wait += st.wait;
    // The reduction: from its start (the last gradient pass) to its end, against the passes' end.
    const double after_passes = std::max(st.passes_end, st.sends_arrive);
    double reduce_exposed = 0, reduce_hidden = 0;
    if (c.grad_reduce > 0) {
      const double end = std::max(st.last_grad_start + c.grad_reduce, after_passes + c.reduce_tail);
      reduce_exposed = end - after_passes;
      reduce_hidden = std::max(0.0, c.grad_reduce - reduce_exposed);
    }
    const double exposed = st.p2p_exposed + reduce_exposed + c.tied_sum + c.gather;
    if (exposed > worst) {
      worst = exposed;
      out.comm_exposed = exposed;
      out.comm_hidden = st.p2p_hidden + reduce_hidden;
    }
  }
  out.p2p_wait_share = out.step_time > 0 ? wait / (p * out.step_time) : 0.0;
  return out;
}

}  // namespace kl::plan
