// The GPT-2-style decoder-only language model: token + position embedding, `layers` blocks (any
// residual variant, models/residual.h), a final LayerNorm and an LM head (tied to the token
// embedding by default). Its parameters are the ParamTable's (models/params.h), its blocks are
// models/block.h, and its one walk, forward and backward, is a pipeline stage
// (src/pipeline/stage.h): a single process runs the whole model as a one-stage pipeline.
//
// This header holds the small types the walk shares with its callers.
#pragma once

#include <cstdint>
#include <functional>

namespace kl {

// Where a micro-batch sits, for dropout masks keyed by (seed, step, global sample index).
struct BatchPosition {
  uint64_t seed = 0;
  int64_t step = 0;
  int64_t first_sample = 0;
};

// Called during the backward pass with an offset into the gradient buffer: every gradient at or
// after it is final for this micro-batch (the buffer is in forward order; backward finishes it from
// the end). The data-parallel reducer starts its buckets from these calls.
using GradientsReady = std::function<void(int64_t offset)>;

// Called during a training forward pass before it reads parameters: every parameter before `end`
// (an offset into the parameter buffer) must be final. ZeRO-1 waits here for the all-gathers of
// the last update, bucket by bucket, so that they overlap the forward pass.
using ParamsNeeded = std::function<void(int64_t end)>;

}  // namespace kl
