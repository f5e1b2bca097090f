#include "src/pipeline/simulator.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace kl::pipeline {
namespace {

// A message in flight: (is gradient, micro-batch, destination global chunk) -> ready time.
using MessageKey = std::tuple<bool, int, int>;

struct StageState {
  size_t pc = 0;
  double clock = 0, busy = 0;
  int held = 0, peak = 0;
  std::set<std::pair<int, int>> forwarded, input_done, done;  // (mb, chunk)
};

}  // namespace

Simulation simulate(const std::vector<Schedule>& schedules, int chunks, const Costs& costs) {
  const int p = static_cast<int>(schedules.size());
  const int last = p * chunks - 1;
  Simulation result;
  std::vector<StageState> state(static_cast<size_t>(p));
  std::map<MessageKey, double> in_flight;
  auto fail = [&](int s, const std::string& what) {
    if (result.error.empty()) result.error = "stage " + std::to_string(s) + ": " + what;
  };
  bool progress = true;
  while (progress && result.error.empty()) {
    progress = false;
    for (int s = 0; s < p && result.error.empty(); ++s) {
      StageState& st = state[static_cast<size_t>(s)];
      while (st.pc < schedules[static_cast<size_t>(s)].instructions.size() && result.error.empty()) {
        const Instruction& ins = schedules[static_cast<size_t>(s)].instructions[st.pc];
        const auto global = [&](int chunk) { return chunk * p + s; };
        bool blocked = false;
        std::visit(
            [&](const auto& x) {
              using X = std::decay_t<decltype(x)>;
              auto compute = [&](double cost) {
                st.clock += cost;
                st.busy += cost;
              };
              auto receive = [&](bool grad, int mb, int chunk) {
                const auto it = in_flight.find({grad, mb, global(chunk)});
                if (it == in_flight.end()) {
                  blocked = true;
                  return;
                }
                st.clock = std::max(st.clock, it->second);
                in_flight.erase(it);
              };
              auto send = [&](bool grad, int mb, int to) {
                if (to < 0 || to > last) return fail(s, "sends past the model's ends");
                if (!in_flight.emplace(MessageKey{grad, mb, to}, st.clock).second) {
                  fail(s, "sends the same message twice");
                }
              };
              if constexpr (std::is_same_v<X, RecvActivation>) {
                receive(false, x.mb, x.chunk);
              } else if constexpr (std::is_same_v<X, RecvGrad>) {
                receive(true, x.mb, x.chunk);
              } else if constexpr (std::is_same_v<X, SendActivation>) {
                send(false, x.mb, global(x.chunk) + 1);
              } else if constexpr (std::is_same_v<X, SendGrad>) {
                send(true, x.mb, global(x.chunk) - 1);
              } else if constexpr (std::is_same_v<X, Forward>) {
                if (!st.forwarded.insert({x.mb, x.chunk}).second) fail(s, "forwards a chunk twice");
                st.peak = std::max(st.peak, ++st.held);
                compute(costs.forward);
              } else if constexpr (std::is_same_v<X, Backward> || std::is_same_v<X, BackwardInput>) {
                if (!st.forwarded.count({x.mb, x.chunk})) fail(s, "backward before forward: " + to_string(ins));
                if (!st.input_done.insert({x.mb, x.chunk}).second) fail(s, "backward twice: " + to_string(ins));
                if constexpr (std::is_same_v<X, Backward>) {
                  st.done.insert({x.mb, x.chunk});
                  --st.held;
                  compute(costs.backward_input + costs.backward_weight);
                } else {
                  compute(costs.backward_input);
                }
              } else if constexpr (std::is_same_v<X, BackwardWeight>) {
                if (!st.input_done.count({x.mb, x.chunk})) fail(s, "weight part before input part");
                if (!st.done.insert({x.mb, x.chunk}).second) fail(s, "weight part twice");
                --st.held;
                compute(costs.backward_weight);
              } else if constexpr (std::is_same_v<X, ReduceGrads>) {
                if (st.done.size() != st.forwarded.size()) fail(s, "reduces before every backward is done");
              }
            },
            ins);
        if (blocked) break;
        if (st.held > schedules[static_cast<size_t>(s)].buffers) fail(s, "holds more activations than declared");
        ++st.pc;
        progress = true;
      }
    }
  }
  for (int s = 0; s < p && result.error.empty(); ++s) {
    const StageState& st = state[static_cast<size_t>(s)];
    if (st.pc < schedules[static_cast<size_t>(s)].instructions.size()) {
      fail(s, "deadlock at " + to_string(schedules[static_cast<size_t>(s)].instructions[st.pc]));
    } else if (st.held != 0 || st.done.size() != st.forwarded.size()) {
      fail(s, "forwards and backwards do not balance");
    }
  }
  if (result.error.empty() && !in_flight.empty()) result.error = "a message was never received";
  double busy = 0;
  for (const StageState& st : state) {
    result.makespan = std::max(result.makespan, st.clock);
    busy += st.busy;
    result.peak_buffers.push_back(st.peak);
  }
  if (result.makespan > 0) result.bubble = 1.0 - busy / (p * result.makespan);
  return result;
}

}  // namespace kl::pipeline
