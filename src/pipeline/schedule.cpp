#include "src/pipeline/schedule.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <type_traits>

namespace kl::pipeline {
namespace {

enum class Op { kF, kB, kBInput, kBWeight };
struct Step {
  Op op;
  int mb, chunk;
};

// GPipe: every forward, then every backward.
std::vector<Step> gpipe_order(int micro) {
  std::vector<Step> order;
  for (int mb = 0; mb < micro; ++mb) order.push_back({Op::kF, mb, 0});
  for (int mb = 0; mb < micro; ++mb) order.push_back({Op::kB, mb, 0});
  return order;
}

// 1F1B (PipeDream-Flush): p - s - 1 warm-up forwards, then alternate, then drain the backwards.
std::vector<Step> one_f_one_b_order(int stage, int stages, int micro) {
  std::vector<Step> order;
  const int warmup = std::min(stages - stage - 1, micro);
  for (int mb = 0; mb < warmup; ++mb) order.push_back({Op::kF, mb, 0});
  for (int i = 0; i < micro - warmup; ++i) {
    order.push_back({Op::kF, warmup + i, 0});
    order.push_back({Op::kB, i, 0});
  }
  for (int mb = micro - warmup; mb < micro; ++mb) order.push_back({Op::kB, mb, 0});
  return order;
}

// Interleaved 1F1B (Megatron-LM): virtual micro-batch k runs chunk (k / p) % v forward (and the
// mirror order backward) of micro-batch (k / pv) p + k % p.
std::vector<Step> interleaved_order(int stage, int stages, int micro, int chunks) {
  const int total = micro * chunks;
  auto at = [&](int k, bool forward) {
    const int chunk = (k / stages) % chunks;
    return Step{forward ? Op::kF : Op::kB, (k / (stages * chunks)) * stages + k % stages,
                forward ? chunk : chunks - 1 - chunk};
  };
  const int warmup = std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
  std::vector<Step> order;
  for (int k = 0; k < warmup; ++k) order.push_back(at(k, true));
  for (int i = 0; i < total - warmup; ++i) {
    order.push_back(at(warmup + i, true));
    order.push_back(at(i, false));
  }
  for (int k = total - warmup; k < total; ++k) order.push_back(at(k, false));
  return order;
}

// ZB-H1: 1F1B's order of forwards and input-gradient backwards; the weight-gradient parts wait and
// fill the time a stage would otherwise idle. Where they go depends on when the other stages'
// messages arrive, so all stages are laid out together on a unit-time clock (F = B = W = 1), which
// is what the schedule is designed for. Stage s holds at most 2p - s - 1 micro-batches (1F1B:
// p - s), counting one waiting only for its weight part as a whole buffer; with p - s the bubble
// only falls to 2/3 of 1F1B's instead of the paper's 1/3.
std::vector<std::vector<Step>> zb1_orders(int stages, int micro) {
  struct Lane {
    std::vector<Step> main;  // F and B-input in 1F1B order
    size_t next = 0;
    int weights_done = 0, forwards_done = 0;
    std::vector<int> inputs_done;  // micro-batches whose input-gradient part is done, in order
    std::vector<Step> order;
  };
  std::vector<Lane> lanes(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    for (Step step : one_f_one_b_order(s, stages, micro)) {
      if (step.op == Op::kB) step.op = Op::kBInput;
      lanes[static_cast<size_t>(s)].main.push_back(step);
    }
  }
  // Finish times (end of the unit slot) of F and B-input per (stage, micro-batch); -1: not yet.
  std::vector<int> f_done(static_cast<size_t>(stages * micro), -1), b_done(f_done.size(), -1);
  auto idx = [micro](int s, int mb) { return static_cast<size_t>(s * micro + mb); };
  auto done_by = [&](const std::vector<int>& finish, int s, int mb, int t) {
    const int at = finish[idx(s, mb)];
    return at >= 0 && at <= t;
  };
  int remaining = stages * micro * 3;
  for (int t = 0; remaining > 0; ++t) {
    for (int s = 0; s < stages; ++s) {
      Lane& lane = lanes[static_cast<size_t>(s)];
      const bool weight_pending = lane.weights_done < static_cast<int>(lane.inputs_done.size());
      std::optional<Step> pick;
      if (lane.next < lane.main.size()) {
        const Step& n = lane.main[lane.next];
        bool ready;
        if (n.op == Op::kF) {
          ready = s == 0 || done_by(f_done, s - 1, n.mb, t);
        } else {
          ready = s == stages - 1 ? done_by(f_done, s, n.mb, t) : done_by(b_done, s + 1, n.mb, t);
        }
        const bool memory_full = n.op == Op::kF && lane.forwards_done - lane.weights_done >= 2 * stages - s - 1;
        if (ready && !(memory_full && weight_pending)) pick = n;
      }
      if (!pick && weight_pending) {  // the oldest micro-batch whose input gradient is done
        pick = Step{Op::kBWeight, lane.inputs_done[static_cast<size_t>(lane.weights_done)], 0};
      }
      if (!pick) continue;
      if (pick->op == Op::kF) {
        f_done[idx(s, pick->mb)] = t + 1;
        ++lane.forwards_done;
        ++lane.next;
      } else if (pick->op == Op::kBInput) {
        b_done[idx(s, pick->mb)] = t + 1;
        lane.inputs_done.push_back(pick->mb);
        ++lane.next;
      } else {
        ++lane.weights_done;
      }
      lane.order.push_back(*pick);
      --remaining;
    }
    if (t > 100 * (micro + stages) * 3) throw std::logic_error("zb1 layout did not converge");
  }
  std::vector<std::vector<Step>> orders;
  for (Lane& lane : lanes) orders.push_back(std::move(lane.order));
  return orders;
}

}  // namespace

ScheduleKind parse_schedule_kind(const std::string& name) {
  const std::optional<ScheduleKind> kind = choice_named<ScheduleKind>(name);
  if (!kind) throw std::invalid_argument("unknown schedule '" + name + "' (" + choice_list<ScheduleKind>() + ")");
  return *kind;
}

namespace {

void check_request(ScheduleKind kind, int stage, int stages, int micro, int chunks) {
  if (stages < 1 || stage < 0 || stage >= stages || micro < 1 || chunks < 1) {
    throw std::invalid_argument("schedule: need 0 <= stage < stages, micro-batches >= 1, virtual >= 1");
  }
  if (kind != ScheduleKind::kInterleaved && chunks != 1) {
    throw std::invalid_argument(std::string("schedule: ") + name_of(kind) + " takes virtual = 1");
  }
  if (kind == ScheduleKind::kInterleaved && micro % stages != 0) {
    throw std::invalid_argument("schedule: interleaved needs micro-batches a multiple of stages");
  }
}

std::vector<Step> order_of(ScheduleKind kind, int stage, int stages, int micro, int chunks) {
  switch (kind) {
    case ScheduleKind::kGPipe: return gpipe_order(micro);
    case ScheduleKind::k1F1B: return one_f_one_b_order(stage, stages, micro);
    case ScheduleKind::kInterleaved: return interleaved_order(stage, stages, micro, chunks);
    case ScheduleKind::kZB1: return zb1_orders(stages, micro)[static_cast<size_t>(stage)];
  }
  return {};
}

// Communication around each computation, and the buffer count: activations are held from a
// chunk's forward until its backward (its weight part, under zb1) is done.
Schedule with_messages(const std::vector<Step>& order, int stage, int stages, int chunks) {
  const int last = stages * chunks - 1;
  Schedule schedule;
  int held = 0;
  for (const Step& step : order) {
    const int global = step.chunk * stages + stage;
    switch (step.op) {
      case Op::kF:
        if (global == 0 || global == last) schedule.instructions.push_back(LoadMicroBatch{step.mb});
        if (global != 0) schedule.instructions.push_back(RecvActivation{step.mb, step.chunk});
        schedule.instructions.push_back(Forward{step.mb, step.chunk});
        if (global != last) schedule.instructions.push_back(SendActivation{step.mb, step.chunk});
        schedule.buffers = std::max(schedule.buffers, ++held);
        break;
      case Op::kB:
      case Op::kBInput:
        if (global != last) schedule.instructions.push_back(RecvGrad{step.mb, step.chunk});
        if (step.op == Op::kB) {
          schedule.instructions.push_back(Backward{step.mb, step.chunk});
          --held;
        } else {
          schedule.instructions.push_back(BackwardInput{step.mb, step.chunk});
        }
        if (global != 0) schedule.instructions.push_back(SendGrad{step.mb, step.chunk});
        break;
      case Op::kBWeight:
        schedule.instructions.push_back(BackwardWeight{step.mb, step.chunk});
        --held;
        break;
    }
  }
  schedule.instructions.push_back(ReduceGrads{});
  schedule.instructions.push_back(OptimizerStep{});
  return schedule;
}

}  // namespace

Schedule make_schedule(ScheduleKind kind, int stage, int stages, int micro, int chunks) {
  check_request(kind, stage, stages, micro, chunks);
  return with_messages(order_of(kind, stage, stages, micro, chunks), stage, stages, chunks);
}

std::vector<Schedule> make_schedules(ScheduleKind kind, int stages, int micro, int chunks) {
  check_request(kind, 0, stages, micro, chunks);
  std::vector<Schedule> all;
  std::vector<std::vector<Step>> zb1;
  if (kind == ScheduleKind::kZB1) zb1 = zb1_orders(stages, micro);  // laid out together, once
  for (int s = 0; s < stages; ++s) {
    all.push_back(with_messages(kind == ScheduleKind::kZB1 ? zb1[static_cast<size_t>(s)]
                                                          : order_of(kind, s, stages, micro, chunks),
                                s, stages, chunks));
  }
  return all;
}

double theoretical_bubble(ScheduleKind kind, int p, int m, int v) {
  switch (kind) {
    case ScheduleKind::kGPipe:
    case ScheduleKind::k1F1B: return double(p - 1) / (m + p - 1);
    case ScheduleKind::kInterleaved: return double(p - 1) / (double(v) * m + p - 1);
    case ScheduleKind::kZB1: return double(p - 1) / (3.0 * m + p - 1);
  }
  return 0;
}

std::string to_string(const Instruction& instruction) {
  return std::visit(
      [](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        auto mc = [&](const char* name) {
          if constexpr (requires { x.chunk; }) {
            return std::string(name) + "(mb " + std::to_string(x.mb) + ", chunk " + std::to_string(x.chunk) + ")";
          } else {
            return std::string(name);
          }
        };
        if constexpr (std::is_same_v<X, LoadMicroBatch>) return "LoadMicroBatch(mb " + std::to_string(x.mb) + ")";
        if constexpr (std::is_same_v<X, Forward>) return mc("Forward");
        if constexpr (std::is_same_v<X, Backward>) return mc("Backward");
        if constexpr (std::is_same_v<X, BackwardInput>) return mc("BackwardInput");
        if constexpr (std::is_same_v<X, BackwardWeight>) return mc("BackwardWeight");
        if constexpr (std::is_same_v<X, SendActivation>) return mc("SendActivation");
        if constexpr (std::is_same_v<X, RecvActivation>) return mc("RecvActivation");
        if constexpr (std::is_same_v<X, SendGrad>) return mc("SendGrad");
        if constexpr (std::is_same_v<X, RecvGrad>) return mc("RecvGrad");
        if constexpr (std::is_same_v<X, ReduceGrads>) return "ReduceGrads";
        if constexpr (std::is_same_v<X, OptimizerStep>) return "OptimizerStep";
        return "?";
      },
      instruction);
}

}  // namespace kl::pipeline
