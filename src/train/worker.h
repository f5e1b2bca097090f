// What one rank computes in a training step, apart from the optimizer: the whole model
// (src/train/trainer.cpp) or one pipeline stage (src/pipeline/pipeline_worker.h). The trainer owns
// the rest of the step, the same for both: the data-parallel reduction, the gradient norm across
// stages and replicas, clipping, AdamW, validation and metrics.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "models/gpt.h"
#include "models/params.h"
#include "src/data/dataset.h"

namespace kl {

// Rank `dp_rank`'s share of a step is samples [dp_rank * per_rank, (dp_rank + 1) * per_rank),
// taken `micro_batch` at a time: fn(first sample, whether it is the step's last micro-batch).
template <class F>
void for_each_micro_batch(int dp_rank, int per_rank, int micro_batch, F&& fn) {
  const int micro_steps = per_rank / micro_batch;
  for (int micro = 0; micro < micro_steps; ++micro) {
    fn(int64_t{dp_rank} * per_rank + int64_t{micro} * micro_batch, micro == micro_steps - 1);
  }
}

// Evaluation windows [begin, begin + count), `micro_batch` at a time: fn(first window, how many).
template <class F>
void for_each_eval_batch(int64_t begin, int64_t count, int micro_batch, F&& fn) {
  for (int64_t first = begin; first < begin + count; first += micro_batch) {
    fn(first, static_cast<int>(std::min<int64_t>(micro_batch, begin + count - first)));
  }
}

// A rank's part of one step.
struct StepWork {
  double loss = 0;        // this rank's share of the step's mean loss (summed over ranks: the loss)
  double p2p_wait_s = 0;  // blocked on pipeline messages
  double activation_bytes = 0;  // activation memory held at the step's peak (pipeline stages)
};

class Worker {
 public:
  virtual ~Worker() = default;
  virtual const ParamTable& table() const = 0;
  virtual std::span<float> params() = 0;
  virtual std::span<float> grads() = 0;

  // Zeroes grads(), then accumulates the gradient of this rank's share of step `step` (0-based)
  // into it, calling `ready` (may be empty) as the buffer becomes final from the end towards the
  // start, for the data-parallel reducer.
  virtual StepWork step(const TokenDataset& data, int64_t step, const GradientsReady& ready) = 0;

  // Sum over evaluation windows [begin, begin + count) of `total` of their mean losses, without
  // dropout; ranks that compute no loss (pipeline stages before the last) return 0.
  virtual double evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total) = 0;

  // Evaluation passes treat block `layer` as removed, its input passed on (-1: none).
  virtual void skip_block(int layer) = 0;

  // While set, training passes add their blocks' measurements to `stats` (by global block index).
  virtual void collect(StreamStats* stats) = 0;

  // Gradient elements [first, second) that another rank holds too (a tied embedding's second
  // copy): left out of the global norm so that each element counts once.
  virtual std::pair<int64_t, int64_t> duplicate_range() const { return {0, 0}; }
  // Collective: KL_CHECKs that such copies still hold identical values.
  virtual void check_copies_agree(int64_t /*step*/) {}

  // Every parameter of the model in the whole model's flat layout (models/params.h), on the rank
  // that leads the pipeline (stage 0); other ranks take part and may get an empty vector.
  virtual std::vector<float> global_params() = 0;

  virtual std::string describe() const = 0;

  // Fault injection for tests: at this step (1-based) the gradient buffer starts with a NaN in its
  // middle, as if the backward pass had produced one, before any reduction sees it. 0: never.
  int64_t poison_step = 0;

 protected:
  void maybe_poison(int64_t step) {
    if (step + 1 == poison_step) grads()[grads().size() / 2] = std::numeric_limits<float>::quiet_NaN();
  }
};

}  // namespace kl
