// A GPT-2-style decoder-only language model: token + position embedding, `layers` pre-norm blocks,
// a final LayerNorm and an LM head (tied to the token embedding by default).
//
// The model owns its parameters and gradients (flat buffers laid out by the ParamTable) and the
// activations of one micro-batch, all allocated once at construction: a training step allocates
// nothing. With recompute, only each block's input is kept and the backward pass re-runs the
// block's forward from it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "models/block.h"
#include "models/params.h"
#include "src/config/config.h"

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

template <class T>
class GptModel {
 public:
  // `micro_batch`: the most sequences one forward pass takes. The parameter and gradient buffers
  // are padded with zeros to a multiple of `buffer_multiple` elements (ZeRO shards them evenly).
  GptModel(const ModelConfig& config, int micro_batch, bool recompute, int64_t buffer_multiple = 1);

  const ModelConfig& config() const { return config_; }
  const ParamTable& table() const { return table_; }
  std::span<T> params() { return params_; }
  std::span<const T> params() const { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }

  void init(uint64_t seed) { init_parameters(table_, seed, params_.data()); }
  void zero_grads();

  // Forward and backward of B <= micro_batch sequences (inputs/targets [B, seq_len]) with dropout.
  // Parameter gradients accumulate, with dL/dlogit scaled by `loss_scale` per token (1 / tokens of
  // the whole optimizer step gives the gradient of the step's mean loss). Returns the mean loss.
  double forward_backward(const int32_t* inputs, const int32_t* targets, int B,
                          const BatchPosition& position, double loss_scale,
                          const GradientsReady& ready = {});

  // Forward only, without dropout. Returns the mean loss.
  double evaluate(const int32_t* inputs, const int32_t* targets, int B);

  // Evaluation passes treat block `layer` as removed (its input passes through; -1: none), for
  // the lesion study.
  void skip_block(int layer) { skip_ = layer; }

  // While set, training passes add their per-block measurements to `stats` (diagnostics).
  void collect(StreamStats* stats) { stats_ = stats; }

  // The logits [B, seq_len, vocab] of the last forward pass.
  std::span<const T> logits() const { return logits_; }

 private:
  double forward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position,
                 bool training);
  void backward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position,
                double loss_scale, const GradientsReady& ready);
  BlockShape shape(int B) const;
  BlockDropout dropout_for(const BatchPosition& position, bool training) const;
  const BlockActivations<T>& activations(int layer) const;

  ModelConfig config_;
  ParamTable table_;
  int micro_batch_;
  bool recompute_;
  std::vector<T> params_, grads_;
  std::vector<BlockTensors<const T*>> layer_params_;
  std::vector<BlockTensors<T*>> layer_grads_;
  std::vector<int64_t> layer_offsets_;  // first element of each block's tensors
  // Offsets of the tensors outside the blocks; the head is the token embedding when tied.
  int64_t token_embedding_, position_embedding_, final_norm_weight_, final_norm_bias_, head_;

  // Activations: the residual stream at every block boundary, each block's saved tensors (one set
  // reused by every block under recompute), the final norm and the logits.
  std::vector<T> residual_;     // [layers + 1][N, C]
  std::vector<T> block_memory_;
  std::vector<BlockActivations<T>> block_acts_;
  std::vector<T> scratch_memory_;
  BlockScratch<T> scratch_{};
  std::vector<T> final_norm_, final_mean_, final_rstd_;  // [N,C], [N], [N]
  std::vector<T> residual_grad_;                        // [N,C] dL/dx, flowing down the stream
  std::vector<T> logits_;                               // [N,V]
  std::vector<T> probs_;                                // [N,V] softmax, then dL/dlogits
  std::vector<T> losses_;                               // [N]
  StreamStats* stats_ = nullptr;
  int skip_ = -1;
};

}  // namespace kl
