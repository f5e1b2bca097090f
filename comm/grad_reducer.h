// Sums gradients over a data-parallel group in buckets, overlapped with the backward pass.
//
// The gradient buffer is laid out in forward order (the parameter table's order), and the backward
// pass finishes it from the end towards the start: the head and final norm first, then layers
// L-1 .. 0, then the embeddings. So the reducer cuts the buffer into buckets of `bucket_elements`
// (the one at the very start smaller), launched from the end, and the backward pass reports how far it has got ("everything at or after offset
// X is final"); each bucket whose elements are all final starts its non-blocking all-reduce at once.
// finish() starts what is left and waits on the handles, nothing else.
//
// Each rank scales its loss by 1 / (tokens of the global batch), so the sum over ranks is already
// the gradient of the global batch's mean loss: no division afterwards.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "comm/comm.h"

namespace kl {

// Where the buckets of a flat buffer of `size` elements begin, ascending from 0: a small bucket
// first (a quarter of `bucket_elements`), then full ones, every boundary a multiple of `multiple`.
// The bucket at the start is the last to become ready (the embeddings finish the backward pass)
// and nothing is left to hide its reduction behind, so it is kept small.
std::vector<int64_t> bucket_begins(int64_t size, int64_t bucket_elements, int64_t multiple = 1);

class GradReducer {
 public:
  GradReducer(Comm& comm, std::span<float> grads, int64_t bucket_elements);

  // Before a step's last backward pass.
  void begin();
  // Everything in grads[offset, end) is final: start the buckets that lie inside it. Also lets
  // MPI progress the reductions already started (non-blocking collectives advance inside MPI calls).
  void ready_from(int64_t offset);
  // Starts the remaining buckets and waits for all. Returns the seconds spent here.
  double finish();

  int buckets() const { return static_cast<int>(bucket_begin_.size()); }
  int64_t bytes_per_step() const { return static_cast<int64_t>(grads_.size() * sizeof(float)); }

 private:
  Comm& comm_;
  std::span<float> grads_;
  std::vector<int64_t> bucket_begin_;  // bucket k covers [begin[k], begin[k-1]) (k=0 ends at the end)
  std::vector<Handle> handles_;
  size_t started_ = 0;
};

}  // namespace kl
