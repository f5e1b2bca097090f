// The gradient sums over a data-parallel group (ReduceGrads): bucketed all-reduce overlapped with
// the backward pass, or under ZeRO-1 bucketed reduce-scatters into this rank's shard overlapped
// with the backward pass and, after its update, bucketed all-gathers of the parameters that the
// next forward pass waits for bucket by bucket. Buffers in the worker's memory, which the group
// must take.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "comm/comm.h"
#include "comm/grad_reducer.h"
#include "comm/shard_reducer.h"
#include "models/gpt.h"
#include "models/vector_ops.h"
#include "src/config/config.h"
#include "src/pipeline/worker.h"

namespace kl {

class GradSync {
 public:
  GradSync(const Config& c, Comm& dp, Worker& worker);

  bool zero() const { return zero_; }
  // The elements this rank's optimizer updates, in buffer order: the whole buffer, or under ZeRO-1
  // its slice of every bucket. owned_grads() holds them one after the other.
  const std::vector<BufferRange>& shard() const { return shard_; }
  int buckets() const;
  // Bytes each rank puts through its gradient collectives per step.
  int64_t bytes_per_step() const;
  // Where the backward pass reports finished gradients (empty: no overlap).
  GradientsReady ready();
  // Where the forward pass says which parameters it is about to read (empty: nothing to wait for).
  ParamsNeeded needed();
  // Before a step's backward passes.
  void begin();
  // The gradients this rank's optimizer uses: all of them, or its reduce-scattered shard.
  std::span<float> owned_grads();
  // Sums the gradients over the group (each rank's loss scale is 1 / global tokens, so the sum is
  // the global batch's gradient). Returns the seconds spent blocked on it.
  double finish();
  // After the update of this rank's shard: starts gathering the others' (ZeRO-1). Without overlap,
  // or where the forward pass cannot wait bucket by bucket, also waits. Returns the seconds waited.
  double gather_params();
  // Waits until every parameter is whole again (before anything but a training forward pass reads
  // them, or writes them). Returns the seconds waited; 0 when nothing was in flight.
  double wait_params();
  // The seconds the forward passes have waited on gathers since the last call.
  double take_forward_wait();

 private:
  const Config& c_;
  Comm& dp_;
  Worker& worker_;
  bool zero_;
  bool defer_gather_ = false;  // the next forward pass waits for the gathers
  std::vector<BufferRange> shard_;
  std::unique_ptr<VectorOps<float>::Buffer> grad_shard_;
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<ShardReducer> sharded_;
  double forward_wait_ = 0;
};

}  // namespace kl
