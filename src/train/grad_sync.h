// The gradient sums over a data-parallel group (ReduceGrads): bucketed all-reduce overlapped with
// the backward pass, or under ZeRO-1 a reduce-scatter into this rank's shard and, after its update,
// an all-gather of the parameters. Buffers in the worker's memory, which the group must take.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "comm/comm.h"
#include "comm/grad_reducer.h"
#include "models/gpt.h"
#include "models/vector_ops.h"
#include "src/config/config.h"
#include "src/pipeline/worker.h"

namespace kl {

class GradSync {
 public:
  GradSync(const Config& c, Comm& dp, Worker& worker);

  struct Shard {
    int64_t begin, end;
  };
  bool zero() const { return zero_; }
  // The elements this rank's optimizer updates: all, or its 1/dp shard.
  const Shard& shard() const { return shard_; }
  int buckets() const { return reducer_ ? reducer_->buckets() : 0; }
  // Bytes each rank puts through its gradient collectives per step.
  int64_t bytes_per_step() const;
  // Where the backward pass reports finished gradients (empty: no overlap).
  GradientsReady ready();
  // Before a step's backward passes.
  void begin();
  // The gradients this rank's optimizer uses: all of them, or its reduce-scattered shard.
  std::span<float> owned_grads();
  // Sums the gradients over the group (each rank's loss scale is 1 / global tokens, so the sum is
  // the global batch's gradient). Returns the seconds spent blocked on it.
  double finish();
  // After the update of this rank's shard: every rank gathers the others'. Returns the seconds.
  double gather_params();

 private:
  const Config& c_;
  Comm& dp_;
  Worker& worker_;
  bool zero_;
  Shard shard_{0, 0};
  std::unique_ptr<VectorOps<float>::Buffer> grad_shard_;
  std::unique_ptr<GradReducer> reducer_;
};

}  // namespace kl
