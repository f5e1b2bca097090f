// The whole model as a one-stage pipeline on a CPU backend (src/pipeline/stage.h; CpuBackend<T> unless
// given, e.g. CpuBf16Backend), with the forward-backward calls the model-level tests make. Not a
// second walk: every call is the stage's.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "models/backend.h"
#include "models/vector_ops.h"
#include "src/pipeline/stage.h"

namespace kl::test {

template <class T, class Backend = CpuBackend<T>>
class WholeModel {
 public:
  WholeModel(const ModelConfig& config, int micro_batch, bool recompute)
      : stage_(backend_, config, whole(config), micro_batch, 1, recompute, false, 1) {}

  const ModelConfig& config() const { return stage_.config(); }
  const ParamTable& table() const { return stage_.table(); }
  std::span<T> params() { return stage_.params(); }
  std::span<T> grads() { return stage_.grads(); }
  void init(uint64_t seed) { stage_.init(seed); }
  void zero_grads() { stage_.zero_grads(); }
  // After params() were written: refreshes the copy the passes read (bf16 activations).
  void params_changed() { stage_.params_changed(); }
  void skip_block(int layer) { stage_.skip_block(layer); }
  void collect(StreamStats* stats) { stage_.collect(stats); }
  VectorOps<T>& ops() { return ops_; }

  // Forward and backward of B sequences with dropout; gradients accumulate with dL/dlogit scaled
  // by `loss_scale` per token. Returns the mean loss over the B x seq_len tokens.
  double forward_backward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position,
                          double loss_scale, const GradientsReady& ready = {}) {
    stage_.forward(0, 0, B, nullptr, inputs, targets, position, true);
    last_B_ = B;
    const double loss = stage_.take_loss_sum() / (double(B) * config().seq_len);
    stage_.backward(0, 0, B, BackwardPart::kAll, nullptr, position, loss_scale, ready);
    return loss;
  }
  // Forward only, without dropout. Returns the mean loss.
  double evaluate(const int32_t* inputs, const int32_t* targets, int B) {
    stage_.forward(0, 0, B, nullptr, inputs, targets, {}, false);
    last_B_ = B;
    return stage_.take_loss_sum() / (double(B) * config().seq_len);
  }
  // The logits [B, seq_len, vocab] of the last forward pass.
  std::vector<T> logits() { return stage_.logits(0, last_B_); }

 private:
  static pipeline::StageLayout whole(const ModelConfig& config) {
    pipeline::StageLayout layout;
    layout.ranges = {{0, config.layers}};
    return layout;
  }
  Backend backend_;
  BackendVectorOps<Backend> ops_{backend_};
  pipeline::Stage<Backend> stage_;
  int last_B_ = 1;
};

}  // namespace kl::test
