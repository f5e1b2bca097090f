#include "models/gpt.h"

#include <algorithm>

#include "src/kernels/cpu/ops.h"
#include "src/util/error.h"

namespace kl {

template <class T>
GptModel<T>::GptModel(const ModelConfig& config, int micro_batch, bool recompute,
                      int64_t buffer_multiple)
    : config_(config),
      table_(config),
      micro_batch_(micro_batch),
      recompute_(recompute),
      token_embedding_(table_.get("embed.token.weight").offset),
      position_embedding_(table_.get("embed.position.weight").offset),
      final_norm_weight_(table_.get("final_norm.weight").offset),
      final_norm_bias_(table_.get("final_norm.bias").offset),
      head_(config.tie_embeddings ? token_embedding_ : table_.get("head.weight").offset) {
  const int64_t padded = (table_.buffer_size() + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
  params_.assign(static_cast<size_t>(padded), T(0));
  grads_.assign(params_.size(), T(0));
  for (int l = 0; l < config_.layers; ++l) {
    layer_params_.push_back(block_tensors<const T*>(table_, params_.data(), l));
    layer_grads_.push_back(block_tensors<T*>(table_, grads_.data(), l));
    layer_offsets_.push_back(table_.layer_offset(l));
  }
  const BlockShape s = shape(micro_batch_);
  const int64_t NC = s.tokens() * s.C;
  residual_.assign(static_cast<size_t>(NC * (config_.layers + 1)), T(0));
  const int saved_blocks = recompute_ ? 1 : config_.layers;
  const int64_t per_block = BlockActivations<T>::size(s);
  block_memory_.assign(static_cast<size_t>(per_block * saved_blocks), T(0));
  for (int l = 0; l < saved_blocks; ++l) {
    block_acts_.push_back(BlockActivations<T>::carve(block_memory_.data() + per_block * l, s));
  }
  scratch_memory_.assign(static_cast<size_t>(BlockScratch<T>::size(s)), T(0));
  scratch_ = BlockScratch<T>::carve(scratch_memory_.data(), s);
  final_norm_.assign(static_cast<size_t>(NC), T(0));
  final_mean_.assign(static_cast<size_t>(s.tokens()), T(0));
  final_rstd_.assign(static_cast<size_t>(s.tokens()), T(0));
  residual_grad_.assign(static_cast<size_t>(NC), T(0));
  logits_.assign(static_cast<size_t>(s.tokens() * config_.vocab), T(0));
  probs_.assign(logits_.size(), T(0));
  losses_.assign(static_cast<size_t>(s.tokens()), T(0));
}

template <class T>
BlockShape GptModel<T>::shape(int B) const {
  return block_shape(config_, B);
}

template <class T>
BlockDropout GptModel<T>::dropout_for(const BatchPosition& position, bool training) const {
  return BlockDropout::make(config_, position.seed, position.step, position.first_sample, training);
}

template <class T>
const BlockActivations<T>& GptModel<T>::activations(int layer) const {
  return block_acts_[recompute_ ? 0 : static_cast<size_t>(layer)];
}

template <class T>
void GptModel<T>::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <class T>
double GptModel<T>::forward(const int32_t* inputs, const int32_t* targets, int B,
                            const BatchPosition& position, bool training) {
  KL_CHECK(B >= 1 && B <= micro_batch_, "batch larger than the model's micro-batch buffers");
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  const BlockDropout dropout = dropout_for(position, training);
  const T* p = params_.data();
  T* x = residual_.data();
  cpu::embedding_forward(x, inputs, p + token_embedding_, p + position_embedding_, B, s.T, s.C);
  cpu::dropout_forward(x, x, B, int64_t{s.T} * s.C, dropout.p, dropout.at(kEmbeddingDropoutSite));
  StreamStats* stats = training ? stats_ : nullptr;
  for (int l = 0; l < config_.layers; ++l) {
    if (!training && l == skip_) {
      std::copy(x + l * NC, x + (l + 1) * NC, x + (l + 1) * NC);
      continue;
    }
    double branch_sq[2] = {0.0, 0.0};
    block_forward(s, l, layer_params_[static_cast<size_t>(l)], x + l * NC, x + (l + 1) * NC,
                  activations(l), scratch_, dropout, stats ? branch_sq : nullptr);
    if (stats) stats->add_forward(l, cpu::sum_squares(x + l * NC, NC), branch_sq);
  }
  if (stats) stats->final_act_sq += cpu::sum_squares(x + config_.layers * NC, NC);
  cpu::layernorm_forward(final_norm_.data(), final_mean_.data(), final_rstd_.data(),
                         x + config_.layers * NC, p + final_norm_weight_, p + final_norm_bias_, N, s.C);
  cpu::linear_forward<T>(logits_.data(), final_norm_.data(), p + head_, nullptr, N, s.C, config_.vocab);
  cpu::softmax_xent_forward(losses_.data(), probs_.data(), logits_.data(), targets, N, config_.vocab);
  double sum = 0.0;
  for (int n = 0; n < N; ++n) sum += losses_[static_cast<size_t>(n)];
  return sum / N;
}

template <class T>
void GptModel<T>::backward(const int32_t* inputs, const int32_t* targets, int B,
                           const BatchPosition& position, double loss_scale,
                           const GradientsReady& ready) {
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  const BlockDropout dropout = dropout_for(position, true);
  T* x = residual_.data();
  T* dres = residual_grad_.data();

  // Head: probs_ becomes dL/dlogits in place.
  cpu::softmax_xent_backward(probs_.data(), probs_.data(), targets, T(loss_scale), N, config_.vocab);
  const T* p = params_.data();
  T* g = grads_.data();
  cpu::linear_backward<T>(scratch_.dnc, g + head_, nullptr, probs_.data(), final_norm_.data(),
                          p + head_, N, s.C, config_.vocab);
  std::fill(dres, dres + NC, T(0));
  cpu::layernorm_backward(dres, g + final_norm_weight_, g + final_norm_bias_, scratch_.dnc,
                          x + config_.layers * NC, p + final_norm_weight_, final_mean_.data(),
                          final_rstd_.data(), N, s.C);
  if (ready) ready(final_norm_weight_);  // the final norm and an untied head lie after the blocks
  if (stats_) stats_->final_grad_sq += cpu::sum_squares(dres, NC);
  for (int l = config_.layers - 1; l >= 0; --l) {
    if (recompute_) {
      block_forward(s, l, layer_params_[static_cast<size_t>(l)], x + l * NC, x + (l + 1) * NC,
                    activations(l), scratch_, dropout);
    }
    block_backward(s, l, layer_params_[static_cast<size_t>(l)], layer_grads_[static_cast<size_t>(l)],
                   x + l * NC, activations(l), scratch_, dropout, dres, BackwardPart::kAll,
                   BlockOutputGrads<T>::in_scratch(scratch_));
    if (stats_) stats_->grad_sq[static_cast<size_t>(l)] += cpu::sum_squares(dres, NC);
    if (ready) ready(layer_offsets_[static_cast<size_t>(l)]);
  }
  cpu::dropout_backward(dres, dres, B, int64_t{s.T} * s.C, dropout.p, dropout.at(kEmbeddingDropoutSite));
  cpu::embedding_backward(g + token_embedding_, g + position_embedding_, dres, inputs, B, s.T, s.C);
  if (ready) ready(0);
}

template <class T>
double GptModel<T>::forward_backward(const int32_t* inputs, const int32_t* targets, int B,
                                     const BatchPosition& position, double loss_scale,
                                     const GradientsReady& ready) {
  const double loss = forward(inputs, targets, B, position, /*training=*/true);
  backward(inputs, targets, B, position, loss_scale, ready);
  return loss;
}

template <class T>
double GptModel<T>::evaluate(const int32_t* inputs, const int32_t* targets, int B) {
  return forward(inputs, targets, B, BatchPosition{}, /*training=*/false);
}

template class GptModel<float>;
template class GptModel<double>;

}  // namespace kl
