// ZeRO-1's gradient sums and parameter gathers over a data-parallel group, bucket by bucket, so
// that the reduce-scatter overlaps the backward pass and the all-gather the next forward pass.
//
// The flat buffer (forward order, its size a multiple of dp) is cut into the same kind of buckets
// as GradReducer's (bucket_begins), each a multiple of dp elements, and rank r owns the r-th of
// the dp equal slices of every bucket: its shard is one piece per bucket. The pieces' gradients lie
// one after the other in a local buffer (bucket order), which the optimizer updates with moments
// in the same layout. Every collective is a plain equal-chunk reduce-scatter or all-gather of one
// bucket, so MPI and NCCL run them alike, and running them after the backward pass instead of
// during it (parallel.overlap = false) changes when they run, not what they compute.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "comm/comm.h"
#include "models/params.h"

namespace kl {

class ShardReducer {
 public:
  // `grads` and `params`: the whole flat buffers; `shard_grads`: the local buffer, 1/comm.size() of
  // them. Bucket boundaries are multiples of comm.size(), which must divide grads.size().
  ShardReducer(Comm& comm, std::span<float> grads, std::span<float> params, std::span<float> shard_grads,
               int64_t bucket_elements);

  // This rank's pieces, in buffer order: piece k is the local buffer's next piece.size() elements.
  const std::vector<BufferRange>& pieces() const { return pieces_; }
  int buckets() const { return static_cast<int>(buckets_.size()); }

  // Before a step's last backward pass.
  void begin();
  // Everything in grads[offset, end) is final: reduce-scatter the buckets inside it (launched from
  // the end of the buffer), and let MPI progress those already started.
  void ready_from(int64_t offset);
  // Starts the remaining reduce-scatters and waits for all. Returns the seconds spent here.
  double finish();

  // After the update of this rank's pieces of `params`: starts every bucket's all-gather, in
  // forward order (the order the next forward pass reads them).
  void start_gather();
  // params[0, end) must be whole: waits for the gathers of the buckets that begin before `end`
  // and lets the rest progress. Returns the seconds spent waiting. Cheap once they are done.
  double need_params(int64_t end);

 private:
  Comm& comm_;
  std::span<float> grads_, params_, shard_grads_;
  std::vector<BufferRange> buckets_;  // buffer order
  std::vector<BufferRange> pieces_;   // this rank's slice of each bucket
  std::vector<int64_t> local_;        // where each piece starts in shard_grads
  std::vector<Handle> reductions_;    // one per bucket started, from the last bucket down
  std::vector<Handle> gathers_;       // one per bucket, buffer order; null once waited for
  size_t reduced_ = 0;                // buckets whose reduce-scatter started (from the end)
  size_t gathered_ = 0;               // buckets [0, gathered_) known whole
};

}  // namespace kl
