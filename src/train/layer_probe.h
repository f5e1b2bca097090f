// Per-layer measurements of the residual stream over one training step (run.diag_every), taken
// while the schedule runs and summed over the pipeline (disjoint layers) and the data-parallel
// group (disjoint samples) into a DiagnosticsRow (src/train/diagnostics.h). Collective: every rank
// of the job probes the same steps.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/train_comms.h"
#include "models/block.h"
#include "src/config/config.h"
#include "src/pipeline/worker.h"
#include "src/train/diagnostics.h"

namespace kl {

class LayerProbe {
 public:
  // `comms`: the rank's host groups.
  LayerProbe(const Config& c, const TrainComms& comms, Worker& worker) : c_(c), comms_(comms), worker_(worker) {}

  // Before the step's passes: the worker starts adding its blocks' measurements here.
  void begin();
  // After them (at OptimizerStep).
  void end_passes() { worker_.collect(nullptr); }
  // Just before the update: keeps the parameters, for the update ratios.
  void before_update() { before_ = worker_.ops().to_host(worker_.params()); }
  // After the update (or its skip): the step's row, the same on every rank.
  DiagnosticsRow row(int64_t step_number);

 private:
  const Config& c_;
  TrainComms comms_;
  Worker& worker_;
  StreamStats stats_;           // this rank's measurements of the step
  std::vector<float> before_;   // the parameters before the update
};

}  // namespace kl
