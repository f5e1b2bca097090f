// `kilolayer plan`: one layout's predicted step (predict), and the search over dp x pp x schedule
// x virtual chunks x micro-batch size x recomputation x ZeRO-1 for the fastest that fits (search).
// Costs from src/plan/cost_model.h, steps from src/plan/timed_sim.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/plan/cost_model.h"
#include "src/plan/timed_sim.h"

namespace kl::plan {

struct Layout {
  int dp = 1, pp = 1;
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_chunks = 1;
  int micro_batch = 1;    // sequences per micro-batch
  int micro_batches = 1;  // per step and data-parallel rank
  Recompute recompute = Recompute::kNone;
  int zero = 0;
};

// The layout's keys as command-line overrides, for launch/mpirun.sh and launch/slurm/train.sbatch:
// "--parallel.dp=8 --parallel.pp=4 --parallel.schedule=interleaved ...".
std::string overrides(const Layout& layout);
std::string describe(const Layout& layout);  // "dp 8 x pp 4, interleaved v2, 16 x mb 2, recompute block, ZeRO-1"

struct StageMemory {
  double params = 0, grads = 0, optimizer = 0;  // bytes: master weights (+ bf16 copy), gradients
                                                // (+ ZeRO-1 shard), AdamW moments
  double activations = 0;  // the schedule's buffers at their peak (what the trainer's
                           // stage_activation_mb reports)
  double shared = 0;       // scratch and (recompute) one block's tensors
  double total() const { return params + grads + optimizer + activations + shared; }
};

struct Prediction {
  Layout layout;
  StepTimeline timeline;
  double tokens_per_s = 0, mfu = 0;
  std::vector<StageMemory> memory;  // per stage (every data-parallel replica alike)
  double peak_memory = 0;           // the largest stage's total
  bool fits = false;
};

// Everything predict needs besides the layout.
struct Model {
  Config config;         // model, train (global_batch), parallel (overlap, bucket_mb, stage_layers), run.precision
  Hardware hardware;
  ComputeCosts costs;         // per micro-batch of costs_micro_batch sequences; other sizes scale
  int costs_micro_batch = 1;  // linearly
  std::optional<double> calibrated_block_bytes;  // the calibration's measured bytes per block
  double calibrated_micro_batch = 0;
};

// `layout`'s step. Throws UserError when the layout is impossible (a check of the config's own).
Prediction predict(const Model& model, const Layout& layout);
// The same from schedules already made (make_schedules), which search shares between variants;
// with !time_unfitting, a layout that does not fit in memory is not simulated (timeline empty).
Prediction predict(const Model& model, const Layout& layout, const std::vector<pipeline::Schedule>& schedules,
                   bool time_unfitting = true);

// The search's freedom: unset fields are searched.
struct Constraints {
  std::optional<int> dp, pp, virtual_chunks, micro_batch, zero;
  std::optional<ScheduleKind> schedule;
  std::optional<Recompute> recompute;
};

struct SearchResult {
  std::vector<Prediction> best;  // fitting layouts, fastest first (at most `top`)
  int considered = 0, fitting = 0;
  std::optional<Prediction> smallest;  // when none fits: the layout with the least memory
};

// Throws UserError when the request is impossible before any layout is tried (gpus not divisible
// by a fixed dp or pp, no data-parallel size dividing the global batch); none fitting in memory is
// reported by an empty `best` with `smallest`.
SearchResult search(const Model& model, int gpus, const Constraints& constraints, int top);

}  // namespace kl::plan
