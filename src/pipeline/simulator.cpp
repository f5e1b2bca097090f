#include "src/pipeline/simulator.h"

#include <algorithm>
#include <map>
#include <optional>
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

namespace {

// One point-to-point operation as the engine posts it: which message, to or from which stage.
struct P2p {
  bool send;
  int peer;
  MessageKey message;  // (is gradient, micro-batch, the receiving global chunk)
  int order = 0;       // its position among this stream's operations with `peer` in this direction
  bool done = false;
};

// One communicator's stream on one stage: the groups issued to it, run one after another.
struct Stream {
  std::vector<std::vector<P2p>> groups;
  size_t running = 0;                          // the first group not done
  std::map<std::pair<bool, int>, int> issued;  // (send, peer) -> operations issued so far
  bool idle() const { return running >= groups.size(); }
};

struct HostState {
  size_t pc = 0;
  Stream streams[2];  // messages to a higher stage, to a lower one (the engine's two communicators)
  size_t posted_until = 0;                          // instructions before this one are posted
  std::pair<int, size_t> receive_group{0, 0};       // (stream, group) of the receive posted last
};

// Messages between two stages go on the communicator of their direction: upwards (to a higher
// stage index) on stream 0, downwards on stream 1.
int stream_of(int stage, const P2p& op) { return (op.send ? op.peer > stage : op.peer < stage) ? 0 : 1; }

}  // namespace

std::string check_rendezvous(const std::vector<Schedule>& schedules) {
  const int p = static_cast<int>(schedules.size());
  std::vector<HostState> state(static_cast<size_t>(p));
  // The operation an instruction posts, or none.
  auto operation = [&](int s, const Instruction& ins) -> std::optional<P2p> {
    const auto global = [&](int chunk) { return chunk * p + s; };
    const auto stage_of = [&](int g) { return g % p; };
    if (const auto* x = std::get_if<SendActivation>(&ins)) {
      return P2p{true, stage_of(global(x->chunk) + 1), {false, x->mb, global(x->chunk) + 1}};
    }
    if (const auto* x = std::get_if<SendGrad>(&ins)) {
      return P2p{true, stage_of(global(x->chunk) - 1), {true, x->mb, global(x->chunk) - 1}};
    }
    if (const auto* x = std::get_if<RecvActivation>(&ins)) {
      return P2p{false, stage_of(global(x->chunk) - 1), {false, x->mb, global(x->chunk)}};
    }
    if (const auto* x = std::get_if<RecvGrad>(&ins)) {
      return P2p{false, stage_of(global(x->chunk) + 1), {true, x->mb, global(x->chunk)}};
    }
    return std::nullopt;
  };
  auto group_done = [](const Stream& st, size_t g) {
    return std::all_of(st.groups[g].begin(), st.groups[g].end(), [](const P2p& op) { return op.done; });
  };
  std::string error;
  for (bool progress = true; progress && error.empty();) {
    progress = false;
    // The hosts: issue groups, wait at receives and at ReduceGrads.
    for (int s = 0; s < p; ++s) {
      HostState& st = state[static_cast<size_t>(s)];
      const auto& list = schedules[static_cast<size_t>(s)].instructions;
      while (st.pc < list.size()) {
        const Instruction& ins = list[st.pc];
        const std::optional<P2p> op = operation(s, ins);
        if (op && st.pc >= st.posted_until) {
          // A send goes out in one group with every point-to-point operation after it up to the
          // next computation (loads skipped), a receive included; a receive alone goes out alone.
          std::vector<P2p> fused{*op};
          size_t end = st.pc + 1;
          for (size_t i = end; op->send && i < list.size(); ++i) {
            if (std::holds_alternative<LoadMicroBatch>(list[i])) continue;
            const std::optional<P2p> next = operation(s, list[i]);
            if (!next) break;
            fused.push_back(*next);
            end = i + 1;
            if (!next->send) break;
          }
          std::vector<P2p> per_stream[2];
          for (P2p& x : fused) {
            Stream& stream = st.streams[stream_of(s, x)];
            x.order = stream.issued[{x.send, x.peer}]++;
            if (!x.send) st.receive_group = {stream_of(s, x), stream.groups.size()};
            per_stream[stream_of(s, x)].push_back(x);
          }
          for (int k = 0; k < 2; ++k) {
            if (!per_stream[k].empty()) st.streams[k].groups.push_back(std::move(per_stream[k]));
          }
          st.posted_until = end;
        }
        if (op && !op->send) {  // the host waits for a receive
          const Stream& stream = st.streams[st.receive_group.first];
          if (!group_done(stream, st.receive_group.second)) break;
        }
        if (std::holds_alternative<ReduceGrads>(ins) && !(st.streams[0].idle() && st.streams[1].idle())) {
          break;  // wait_sends: every issued group done
        }
        ++st.pc;
        progress = true;
      }
    }
    // The streams: an operation completes when the peer's stream of the same communicator runs a
    // group holding its match; a group is done when all of its operations are.
    for (int s = 0; s < p && error.empty(); ++s) {
      for (int k = 0; k < 2 && error.empty(); ++k) {
        Stream& st = state[static_cast<size_t>(s)].streams[k];
        if (st.idle()) continue;
        for (P2p& op : st.groups[st.running]) {
          if (op.done) continue;
          Stream& peer = state[static_cast<size_t>(op.peer)].streams[k];
          if (peer.idle()) continue;
          for (P2p& other : peer.groups[peer.running]) {
            if (other.done || other.send == op.send || other.peer != s || other.order != op.order) continue;
            if (other.message != op.message) {
              error = "stage " + std::to_string(s) + " and stage " + std::to_string(op.peer) +
                      " pair two different messages (no tags to tell them apart)";
              break;
            }
            op.done = other.done = true;
            progress = true;
          }
        }
        for (HostState& host : state) {
          for (Stream& any : host.streams) {
            while (!any.idle() && group_done(any, any.running)) ++any.running;
          }
        }
      }
    }
  }
  if (!error.empty()) return error;
  for (int s = 0; s < p; ++s) {
    const HostState& st = state[static_cast<size_t>(s)];
    const auto& list = schedules[static_cast<size_t>(s)].instructions;
    if (st.pc < list.size()) return "stage " + std::to_string(s) + ": deadlock at " + to_string(list[st.pc]);
    if (!st.streams[0].idle() || !st.streams[1].idle()) {
      return "stage " + std::to_string(s) + ": an operation never completes";
    }
  }
  return "";
}

}  // namespace kl::pipeline
