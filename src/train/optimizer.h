// AdamW over the parameter table, the learning-rate schedule, and global-norm clipping.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "models/params.h"
#include "models/vector_ops.h"
#include "src/config/config.h"

namespace kl {

// The learning rate of step `step` (0-based): lr x (step + 1) / warmup during the warmup, then
// train.schedule over the horizon D = decay_steps (0: steps - warmup), s = step - warmup:
//   cosine        min_lr + (lr - min_lr) (1 + cos(pi p)) / 2,  p = min(s / (D - 1), 1)
//   linear        min_lr + (lr - min_lr) (1 - p)
//   constant      lr
//   wsd           lr, then over the last n = round(wsd_decay_fraction D) steps of the horizon linearly
//                 down: lr - (lr - min_lr) min((s - (D - n) + 1) / n, 1) once s >= D - n
//   inverse_sqrt  max(min_lr, lr sqrt(max(warmup, 1) / (step + 1)))   (no horizon)
// Past the horizon, the decaying schedules stay at min_lr. A pure function of (train, step): a
// resumed run recomputes it; with decay_steps set it does not depend on train.steps.
double learning_rate(const TrainConfig& train, int64_t step);

// Empty when `before` and `after` give the same learning rate to every step in [0, steps_done);
// else a sentence naming the first step that differs and both rates (for a resume's log).
std::string schedule_change(const TrainConfig& before, const TrainConfig& after, int64_t steps_done);

// Scales `grads` (in `ops`' memory) so that their global L2 norm is at most `clip` (0: never), as
// PyTorch's clip_grad_norm_ does. Returns the norm before clipping.
template <class T>
double clip_grad_norm(VectorOps<T>& ops, std::span<T> grads, double clip);

// The scaling half of it, for gradients whose global norm was computed elsewhere (over shards).
template <class T>
void clip_to_norm(VectorOps<T>& ops, std::span<T> grads, double norm, double clip);

// AdamW over pieces of the flat parameter buffer: all of it, or one rank's shard under ZeRO-1 (a
// piece per bucket, src/train/grad_sync.h), in `ops`' memory. The gradients and moments of the
// pieces lie one after the other in local buffers (the moments are allocated for the pieces only).
// Adjacent tensors that share their weight-decay setting are updated in one call (one kernel on a
// GPU).
template <class T>
class AdamW {
 public:
  AdamW(const ParamTable& table, const TrainConfig& train, std::vector<BufferRange> pieces, VectorOps<T>& ops);
  // One piece, [begin, end).
  AdamW(const ParamTable& table, const TrainConfig& train, int64_t begin, int64_t end, VectorOps<T>& ops)
      : AdamW(table, train, std::vector<BufferRange>{{begin, end}}, ops) {}

  // One update with learning rate `lr`; `step` counts from 1 (bias correction). `params` is the
  // whole flat buffer (only the pieces change); `grads` holds the pieces one after the other.
  // Tensors whose table entry says decay=false (biases, LayerNorm) get no weight decay; a tensor's
  // lr_scale and eps_scale multiply lr and epsilon.
  void update(std::span<T> params, std::span<const T> grads, double lr, int64_t step);

  // The moments of the pieces, one after the other: what a checkpoint saves and restores.
  std::span<T> exp_avg() { return m_->span(); }
  std::span<T> exp_avg_sq() { return v_->span(); }
  const std::vector<BufferRange>& pieces() const { return pieces_; }

 private:
  struct Run {  // [begin, end) of the local buffers, from `param` on in the flat buffer: tensors updated alike
    int64_t begin, end, param;
    bool decay;
    double lr_scale, eps_scale;  // the parameter table's per-tensor factors (model.depth_scaling)
    // Whether `o`, which follows, may join this run: the same settings, and the same gap (padding)
    // before it in the local buffers as in the flat one (so not across two pieces).
    bool same_update(const Run& o) const {
      return o.begin - begin == o.param - param && decay == o.decay && lr_scale == o.lr_scale && eps_scale == o.eps_scale;
    }
  };
  TrainConfig train_;
  std::vector<BufferRange> pieces_;
  int64_t local_size_ = 0;
  VectorOps<T>& ops_;
  std::vector<Run> runs_;
  std::unique_ptr<typename VectorOps<T>::Buffer> m_, v_;
};

}  // namespace kl
