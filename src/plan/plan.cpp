#include "src/plan/plan.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "comm/grid.h"
#include "src/pipeline/partition.h"
#include "src/util/error.h"

namespace kl::plan {
namespace {

// The slowest link among the pairs of ranks (a[i], b[i]), as (bandwidth, latency).
struct Link {
  double bandwidth, latency;
};
Link slowest_link(const Hardware& hw, const std::vector<int>& a, const std::vector<int>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] / hw.gpus_per_node != b[i] / hw.gpus_per_node) return {hw.inter_bandwidth, hw.inter_latency};
  }
  return {hw.intra_bandwidth, hw.intra_latency};
}
// A group's ring: inter-node as soon as it spans two nodes.
Link group_link(const Hardware& hw, const std::vector<int>& ranks) {
  for (int r : ranks) {
    if (r / hw.gpus_per_node != ranks.front() / hw.gpus_per_node) return {hw.inter_bandwidth, hw.inter_latency};
  }
  return {hw.intra_bandwidth, hw.intra_latency};
}

// The config at layout `l`. parallel.stage_layers names one count per chunk of the config's own
// pp x virtual: another layout gets the balanced split.
constexpr int kMaxMicroBatches = 1 << 14;  // a simulated step's instruction lists grow with them

Config with_layout(const Config& base, const Layout& l) {
  Config c = base;
  if (l.pp != base.parallel.pp || l.virtual_chunks != base.parallel.virtual_chunks) c.parallel.stage_layers.clear();
  c.parallel.dp = l.dp;
  c.parallel.pp = l.pp;
  c.parallel.schedule = l.schedule;
  c.parallel.virtual_chunks = l.virtual_chunks;
  c.train.micro_batch = l.micro_batch;
  c.parallel.recompute = l.recompute;
  c.parallel.zero = l.zero;
  return c;
}

}  // namespace

std::string overrides(const Layout& l) {
  return "--parallel.dp=" + std::to_string(l.dp) + " --parallel.pp=" + std::to_string(l.pp) +
         " --parallel.schedule=" + name_of(l.schedule) + " --parallel.virtual=" + std::to_string(l.virtual_chunks) +
         " --train.micro_batch=" + std::to_string(l.micro_batch) + " --parallel.recompute=" + name_of(l.recompute) +
         " --parallel.zero=" + std::to_string(l.zero);
}

std::string describe(const Layout& l) {
  std::string text = "dp " + std::to_string(l.dp) + " x pp " + std::to_string(l.pp) + ", " + name_of(l.schedule);
  if (l.virtual_chunks > 1) text += " v" + std::to_string(l.virtual_chunks);
  text += ", " + std::to_string(l.micro_batches) + " x mb " + std::to_string(l.micro_batch);
  if (l.recompute == Recompute::kBlock) text += ", recompute";
  if (l.zero) text += ", ZeRO-1";
  return text;
}

Prediction predict(const Model& model, const Layout& layout) {
  const Config c = with_layout(model.config, layout);
  check_layout(c, layout.dp * layout.pp);
  if (layout.pp > c.model.layers / layout.virtual_chunks) {
    throw UserError("plan: model.layers = " + std::to_string(c.model.layers) + " cannot fill pp x virtual = " +
                    std::to_string(layout.pp * layout.virtual_chunks) + " chunks");
  }
  if (layout.schedule == ScheduleKind::kZB1 && c.model.residual != Residual::kPreNorm) {
    throw UserError("plan: parallel.schedule = zb1 needs model.residual = prenorm");
  }
  if (layout.virtual_chunks > 1 && layout.schedule != ScheduleKind::kInterleaved) {
    throw UserError("plan: parallel.virtual > 1 needs parallel.schedule = interleaved");
  }
  // One process runs 1F1B over one chunk whatever the config names (src/train/trainer.cpp).
  Layout l = layout;
  l.micro_batches = c.micro_batches();
  if (l.micro_batches > kMaxMicroBatches) {
    throw UserError("plan: " + std::to_string(l.micro_batches) + " micro-batches a step, more than the " +
                    std::to_string(kMaxMicroBatches) + " the simulation takes: raise train.micro_batch");
  }
  if (l.pp == 1) {
    l.schedule = ScheduleKind::k1F1B;
    l.virtual_chunks = 1;
  }
  return predict(model, l, pipeline::make_schedules(l.schedule, l.pp, l.micro_batches, l.virtual_chunks));
}

Prediction predict(const Model& model, const Layout& l, const std::vector<pipeline::Schedule>& schedules,
                   bool time_unfitting) {
  const Config c = with_layout(model.config, l);
  const ModelConfig& m = c.model;
  const Hardware& hw = model.hardware;
  ComputeCosts k = model.costs;
  const double size = double(l.micro_batch) / model.costs_micro_batch;
  for (PassCosts* pass : {&k.block, &k.embedding, &k.head}) {
    pass->forward *= size;
    pass->backward_input *= size;
    pass->backward_weight *= size;
  }
  const int p = l.pp, v = l.virtual_chunks, chunks = p * v;
  const bool recompute = l.recompute == Recompute::kBlock, split = l.schedule == ScheduleKind::kZB1;
  const bool zero = l.zero == 1 && l.dp > 1;
  const auto ranges = pipeline::partition_layers(m, chunks, stage_layer_counts(c));
  const ParamCounts params = param_counts(m);
  const Grid grid(l.dp, p);

  ActivationBytes act = activation_bytes(m, l.micro_batch, c.run.precision, recompute, split, hw.attention_keeps_probs);
  if (model.calibrated_block_bytes && !split) {
    // The measured bytes per block (no recomputation) stand in for the formula's. They were
    // measured on the CPU backend, whose attention keeps no softmax: a GPU's is added.
    const double probs = hw.attention_keeps_probs ? attention_probs_extra(m, l.micro_batch, c.run.precision).stash : 0.0;
    const double measured = *model.calibrated_block_bytes * l.micro_batch / model.calibrated_micro_batch +
                            probs * (c.run.precision == Precision::kBf16 ? 2.0 : 4.0);
    const double stream = double(l.micro_batch) * m.seq_len * m.d_model * 4.0;
    act.per_block = recompute ? stream : measured;
  }

  StepCosts costs;
  const double message = double(l.micro_batch) * m.seq_len * m.d_model * 4.0;  // fp32 messages
  Prediction out;
  out.layout = l;
  for (int s = 0; s < p; ++s) {
    StageCosts sc;
    int64_t stage_params = 0;
    int max_blocks = 0;
    bool first = false, last = false;
    for (int local = 0; local < v; ++local) {
      const int g = local * p + s;
      const int blocks = ranges[static_cast<size_t>(g)].end - ranges[static_cast<size_t>(g)].begin;
      max_blocks = std::max(max_blocks, blocks);
      const bool is_first = g == 0, is_last = g == chunks - 1;
      first = first || is_first;
      last = last || is_last;
      auto extra = [&](double PassCosts::*pass) {
        return (is_first ? k.embedding.*pass : 0.0) + (is_last ? k.head.*pass : 0.0);
      };
      sc.forward.push_back(blocks * k.block.forward + extra(&PassCosts::forward));
      sc.backward_input.push_back(blocks * (k.block.backward_input + (recompute ? k.block.forward : 0.0)) +
                                  extra(&PassCosts::backward_input));
      sc.backward_weight.push_back(blocks * k.block.backward_weight + extra(&PassCosts::backward_weight));
      stage_params += blocks * params.block + (is_first ? params.first : 0) + (is_last ? params.last : 0);
    }
    const double grad_bytes = double(stage_params) * 4.0;
    const Link dp_link = group_link(hw, grid.dp_group(s));
    if (l.dp > 1) {
      const double bucket = std::min(grad_bytes, c.parallel.bucket_mb * (1 << 20));
      if (zero) {
        // Bucketed like the all-reduce; the all-gathers overlap the next step's first forward pass,
        // which waits for each bucket before reading it: exposed, the first bucket's gather (the
        // embeddings') or what the forward pass cannot cover, whichever is longer.
        sc.grad_reduce = reduce_scatter_time(grad_bytes, l.dp, dp_link.bandwidth, dp_link.latency);
        sc.reduce_tail = c.parallel.overlap ? reduce_scatter_time(bucket, l.dp, dp_link.bandwidth, dp_link.latency)
                                            : sc.grad_reduce;
        sc.gather = all_gather_time(grad_bytes, l.dp, dp_link.bandwidth, dp_link.latency);
        if (c.parallel.overlap) {
          double first_forward = 0;
          for (double f : sc.forward) first_forward += f;
          sc.gather = std::max(all_gather_time(bucket / 4, l.dp, dp_link.bandwidth, dp_link.latency),
                               sc.gather - first_forward);
        }
      } else {
        sc.grad_reduce = all_reduce_time(grad_bytes, l.dp, dp_link.bandwidth, dp_link.latency);
        sc.reduce_tail = c.parallel.overlap ? all_reduce_time(bucket, l.dp, dp_link.bandwidth, dp_link.latency)
                                            : sc.grad_reduce;
      }
    }
    if (p > 1 && m.tie_embeddings && (first || last)) {
      const Link tied = slowest_link(hw, grid.dp_group(0), grid.dp_group(p - 1));
      sc.tied_sum = all_reduce_time(double(m.padded_vocab()) * m.d_model * 4.0, 2, tied.bandwidth, tied.latency);
    }
    const double owned = zero ? double(stage_params) / l.dp : double(stage_params);
    sc.optimizer = k.optimizer_per_param * owned;
    costs.stages.push_back(sc);

    StageMemory mem;
    mem.params = stage_params * (c.run.precision == Precision::kBf16 ? 6.0 : 4.0);
    mem.grads = stage_params * 4.0 + (zero ? owned * 4.0 : 0.0);
    mem.optimizer = owned * 8.0;
    const double slot = act.per_chunk + max_blocks * act.per_block + (s == p - 1 ? act.head : 0.0) +
                        (s == 0 ? act.embed_grad : 0.0);
    mem.activations = schedules[static_cast<size_t>(s)].buffers * slot;
    mem.shared = act.shared;
    out.memory.push_back(mem);
    out.peak_memory = std::max(out.peak_memory, mem.total());

    std::vector<int> here, above, below;
    for (int d = 0; d < l.dp; ++d) {
      here.push_back(grid.rank({d, s}));
      above.push_back(grid.rank({d, (s + 1) % p}));
      below.push_back(grid.rank({d, (s - 1 + p) % p}));
    }
    const Link to_above = slowest_link(hw, here, above), to_below = slowest_link(hw, here, below);
    costs.send_up.push_back(p > 1 ? p2p_time(message, to_above.bandwidth, to_above.latency) : 0.0);
    costs.send_down.push_back(p > 1 ? p2p_time(message, to_below.bandwidth, to_below.latency) : 0.0);
  }
  // The loss and flag (16 bytes), then the norm, over the pipeline and the replicas.
  const Link pp_link = group_link(hw, grid.pp_group(0)), dp_link = group_link(hw, grid.dp_group(0));
  costs.step_sync = 2.0 * (all_reduce_time(16, p, pp_link.bandwidth, pp_link.latency) +
                           all_reduce_time(16, l.dp, dp_link.bandwidth, dp_link.latency));
  out.fits = out.peak_memory <= hw.memory_bytes;
  if (!out.fits && !time_unfitting) return out;
  out.timeline = simulate_step(schedules, v, costs);
  if (!out.timeline.error.empty()) throw std::logic_error("plan: " + out.timeline.error);
  const double tokens = double(c.train.global_batch) * m.seq_len;
  out.tokens_per_s = tokens / out.timeline.step_time;
  out.mfu = out.tokens_per_s * flops_per_token(m) / (double(l.dp) * p * hw.peak_flops);
  return out;
}

SearchResult search(const Model& model, int gpus, const Constraints& fixed, int top) {
  const Config& c = model.config;
  const ModelConfig& m = c.model;
  auto refuse = [](const std::string& why) { throw UserError("plan: " + why); };
  if (fixed.pp && gpus % *fixed.pp != 0) {
    refuse("--gpus " + std::to_string(gpus) + " is not divisible by --pp " + std::to_string(*fixed.pp));
  }
  if (fixed.dp && gpus % *fixed.dp != 0) {
    refuse("--gpus " + std::to_string(gpus) + " is not divisible by --dp " + std::to_string(*fixed.dp));
  }
  if (fixed.dp && fixed.pp && *fixed.dp * *fixed.pp != gpus) {
    refuse("--dp " + std::to_string(*fixed.dp) + " x --pp " + std::to_string(*fixed.pp) + " is not --gpus " +
           std::to_string(gpus));
  }
  if (fixed.pp && *fixed.pp > m.layers) {
    refuse("--pp " + std::to_string(*fixed.pp) + " exceeds model.layers = " + std::to_string(m.layers));
  }
  if (fixed.micro_batch && c.train.global_batch % *fixed.micro_batch != 0) {
    refuse("--micro-batch " + std::to_string(*fixed.micro_batch) + " does not divide train.global_batch = " +
           std::to_string(c.train.global_batch));
  }
  std::vector<Layout> layouts;
  for (int pp = 1; pp <= std::min(gpus, m.layers); ++pp) {
    if (gpus % pp != 0 || (fixed.pp && pp != *fixed.pp)) continue;
    const int dp = gpus / pp;
    if (fixed.dp && dp != *fixed.dp) continue;
    if (c.train.global_batch % dp != 0) continue;
    const int per_replica = c.train.global_batch / dp;
    std::vector<int> sizes;
    if (fixed.micro_batch) {
      if (per_replica / *fixed.micro_batch <= kMaxMicroBatches) sizes.push_back(*fixed.micro_batch);
    } else {
      // Powers of two up to the replica's batch, at most kMaxMicroBatches of them a step.
      for (int64_t mb = 1; mb <= per_replica; mb *= 2) {
        if (per_replica / mb <= kMaxMicroBatches) sizes.push_back(static_cast<int>(mb));
      }
    }
    for (int mb : sizes) {
      if (per_replica % mb != 0) continue;
      const int micro = per_replica / mb;
      std::vector<std::pair<ScheduleKind, int>> schedules;
      if (pp == 1) {
        schedules.push_back({ScheduleKind::k1F1B, 1});
      } else {
        schedules = {{ScheduleKind::kGPipe, 1}, {ScheduleKind::k1F1B, 1}};
        if (m.residual == Residual::kPreNorm) schedules.push_back({ScheduleKind::kZB1, 1});
        const std::vector<int> chunk_counts =
            fixed.virtual_chunks ? std::vector<int>{*fixed.virtual_chunks} : std::vector<int>{2, 4, 8};
        for (int v : chunk_counts) {
          if (v > 1 && micro % pp == 0 && pp * v <= m.layers) schedules.push_back({ScheduleKind::kInterleaved, v});
        }
      }
      for (auto [kind, v] : schedules) {
        if (fixed.schedule && pp > 1 && kind != *fixed.schedule) continue;
        if (fixed.virtual_chunks && v != *fixed.virtual_chunks && pp > 1) continue;
        for (Recompute r : {Recompute::kNone, Recompute::kBlock}) {
          if (fixed.recompute && r != *fixed.recompute) continue;
          for (int zero : {0, 1}) {
            if ((fixed.zero && zero != *fixed.zero) || (zero == 1 && dp == 1 && !fixed.zero)) continue;
            layouts.push_back({dp, pp, kind, v, mb, micro, r, zero});
          }
        }
      }
    }
  }
  if (layouts.empty()) {
    refuse("no layout of " + std::to_string(gpus) + " GPUs meets the constraints: dp must divide train.global_batch = " +
           std::to_string(c.train.global_batch) + ", pp must divide --gpus and be at most model.layers = " +
           std::to_string(m.layers) + (fixed.schedule ? ", and the schedule must suit pp and the micro-batches" : ""));
  }
  SearchResult result;
  // Schedules are shared by the layouts that differ only in recomputation and ZeRO.
  std::map<std::tuple<int, int, int, int>, std::vector<pipeline::Schedule>> made;
  for (const Layout& l : layouts) {
    ++result.considered;
    const auto key = std::make_tuple(static_cast<int>(l.schedule), l.pp, l.micro_batches, l.virtual_chunks);
    if (!made.count(key)) {
      made.clear();  // layouts come grouped by their schedule: keep one at a time
      made[key] = pipeline::make_schedules(l.schedule, l.pp, l.micro_batches, l.virtual_chunks);
    }
    Prediction prediction = predict(model, l, made[key], /*time_unfitting=*/false);
    if (prediction.fits) {
      ++result.fitting;
      result.best.push_back(std::move(prediction));
    } else if (!result.smallest || prediction.peak_memory < result.smallest->peak_memory) {
      result.smallest = std::move(prediction);
    }
  }
  std::stable_sort(result.best.begin(), result.best.end(),
                   [](const Prediction& a, const Prediction& b) { return a.tokens_per_s > b.tokens_per_s; });
  if (static_cast<int>(result.best.size()) > top) result.best.resize(static_cast<size_t>(top));
  return result;
}

}  // namespace kl::plan
