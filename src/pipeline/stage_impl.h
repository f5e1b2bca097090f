// Forward and backward of one stage's chunks on a backend: the model's only walk. Included where a
// backend is instantiated (stage.cpp for the CPU, src/cuda/instantiate.cpp for the GPU).
//
// Accumulation rule: parameter gradients accumulate (+=) across micro-batches; the stream's
// gradient is assigned at the top of each chunk's backward and accumulates through its blocks.
#pragma once

#include <algorithm>
#include <type_traits>

#include "models/block_impl.h"
#include "src/pipeline/stage.h"
#include "src/util/error.h"

namespace kl::pipeline {

template <class Backend>
Stage<Backend>::Stage(Backend& backend, const ModelConfig& model, StageLayout layout, int micro_batch, int buffers,
                      bool recompute, bool split_backward, int64_t buffer_multiple)
    : be_(backend),
      config_(model),
      layout_(std::move(layout)),
      table_(model, layout_.layers(), layout_.has_embeddings(), layout_.has_head()),
      micro_batch_(micro_batch),
      buffers_(buffers),
      recompute_(recompute),
      split_(split_backward),
      layer_ids_(layout_.layers()) {
  KL_CHECK(buffers_ >= 1, "a stage needs at least one activation buffer");
  const int64_t padded = (table_.buffer_size() + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
  params_ = be_.template alloc<S>(padded);
  grads_ = be_.template alloc<S>(padded);
  if constexpr (!std::is_same_v<A, S>) weight_copy_ = be_.template alloc<A>(padded);
  for (int l : layer_ids_) {
    layer_params_.push_back(block_tensors<const A*>(table_, weights(), l));
    layer_grads_.push_back(block_tensors<S*>(table_, grads_.data(), l));
    layer_offsets_.push_back(table_.layer_offset(l));
  }
  int first = 0, max_layers = 0;
  for (const LayerRange& r : layout_.ranges) {
    chunk_first_.push_back(first);
    first += r.end - r.begin;
    max_layers = std::max(max_layers, r.end - r.begin);
  }
  auto offset_of = [&](const char* name) {
    const ParamSpec* spec = table_.find(name);
    return spec ? spec->offset : int64_t{-1};
  };
  token_embedding_ = offset_of("embed.token.weight");
  position_embedding_ = offset_of("embed.position.weight");
  final_norm_weight_ = offset_of("final_norm.weight");
  final_norm_bias_ = offset_of("final_norm.bias");
  head_ = model.tie_embeddings ? token_embedding_ : offset_of("head.weight");

  // One slot's memory, carved the same way for every slot.
  const BlockShape s = shape(micro_batch_);
  const int64_t N = s.tokens(), NC = N * s.C, V = config_.padded_vocab();
  const bool head = layout_.has_head(), embed_grad = split_ && layout_.has_embeddings();
  Sizes per_slot{0, NC * (max_layers + 1)};
  if (!recompute_) per_slot = per_slot + BlockActivations<Backend>::size(s) * max_layers;
  if (split_) per_slot = per_slot + BlockOutputGrads<Backend>::size(s) * max_layers;
  if (head) per_slot = per_slot + Sizes{NC + N * V, 4 * N};
  if (embed_grad) per_slot = per_slot + Sizes{0, NC};
  slot_sizes_ = per_slot;
  // Shared by every slot: one block's tensors under recomputation, the scratch, dL/dx.
  Sizes shared = BlockScratch<Backend>::size(s) + Sizes{0, NC};
  if (recompute_) shared = shared + BlockActivations<Backend>::size(s);
  act_memory_ = be_.template alloc<A>(per_slot.act * buffers_ + shared.act);
  acc_memory_ = be_.template alloc<S>(per_slot.acc * buffers_ + shared.acc);
  token_memory_ = be_.template alloc<int32_t>(2 * N * buffers_);
  Carver<Backend> m{act_memory_.data(), acc_memory_.data()};
  for (int i = 0; i < buffers_; ++i) {
    Slot slot{};
    slot.residual = m.take_acc(NC * (max_layers + 1));
    for (int l = 0; l < max_layers; ++l) {
      if (!recompute_) slot.acts.push_back(BlockActivations<Backend>::carve(m, s));
      if (split_) slot.out_grads.push_back(BlockOutputGrads<Backend>::carve(m, s));
    }
    if (head) {
      slot.final_norm = m.take_act(NC);
      slot.logits = m.take_act(N * V);
      slot.final_mean = m.take_acc(N);
      slot.final_rstd = m.take_acc(N);
      slot.losses = m.take_acc(N);
      slot.lse = m.take_acc(N);
    }
    if (embed_grad) slot.embed_grad = m.take_acc(NC);
    slot.tokens = token_memory_.data() + 2 * N * i;
    slot.targets = slot.tokens + N;
    slots_.push_back(std::move(slot));
  }
  if (recompute_) shared_acts_ = BlockActivations<Backend>::carve(m, s);
  scratch_ = BlockScratch<Backend>::carve(m, s);
  residual_grad_ = m.take_acc(NC);
}

template <class Backend>
BlockShape Stage<Backend>::shape(int B) const {
  return block_shape(config_, B);
}

template <class Backend>
BlockDropout Stage<Backend>::dropout_for(const BatchPosition& position, bool training) const {
  return BlockDropout::make(config_, position.seed, position.step, position.first_sample, training);
}

template <class Backend>
const BlockActivations<Backend>& Stage<Backend>::acts(const Slot& slot, int i) const {
  return recompute_ ? shared_acts_ : slot.acts[static_cast<size_t>(i)];
}

template <class Backend>
typename Stage<Backend>::Slot& Stage<Backend>::slot(int index) {
  KL_CHECK(index >= 0 && index < buffers_, "activation buffer index out of range");
  return slots_[static_cast<size_t>(index)];
}

template <class Backend>
const typename Stage<Backend>::A* Stage<Backend>::weights() const {
  if constexpr (std::is_same_v<A, S>) {
    return params_.data();
  } else {
    return weight_copy_.data();
  }
}

template <class Backend>
void Stage<Backend>::params_changed() {
  if constexpr (!std::is_same_v<A, S>) {
    be_.convert(weight_copy_.data(), static_cast<const S*>(params_.data()), static_cast<int64_t>(params_.size()));
  }
}

template <class Backend>
void Stage<Backend>::init(uint64_t seed) {
  std::vector<S> host(params_.size(), S(0));
  init_parameters(table_, seed, host.data());
  be_.upload(params_.data(), host.data(), static_cast<int64_t>(host.size()));
  params_changed();
}

template <class Backend>
int64_t Stage<Backend>::chunk_offset(int chunk) const {
  return chunk == 0 ? 0 : layer_offsets_[static_cast<size_t>(chunk_first_[static_cast<size_t>(chunk)])];
}

template <class Backend>
void Stage<Backend>::forward(int index, int chunk, int B, const S* input, const int32_t* tokens,
                             const int32_t* targets, const BatchPosition& position, bool training,
                             const ParamsNeeded& needed) {
  KL_CHECK(B >= 1 && B <= micro_batch_, "batch larger than the stage's micro-batch buffers");
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  Slot& sl = slot(index);
  S* x = sl.residual;
  const A* p = weights();
  const BlockDropout dropout = dropout_for(position, training);
  const bool first = layout_.first_chunk(chunk), last = layout_.last_chunk(chunk);
  // The parameters before `end` are about to be read: the embeddings lie before the first block,
  // each block before the next, the final norm and the head after the last.
  const auto before_reading = [&](size_t next_block) {
    if (!needed) return;
    needed(next_block < layer_offsets_.size() ? layer_offsets_[next_block] : static_cast<int64_t>(params_.size()));
  };
  if (first) before_reading(0);
  if (first) be_.upload(sl.tokens, tokens, N);
  if (last) be_.upload(sl.targets, targets, N);
  if (first) {
    be_.embedding_forward(x, sl.tokens, p + token_embedding_, p + position_embedding_, B, s.T, s.C);
    be_.dropout(x, static_cast<const S*>(x), B, int64_t{s.T} * s.C, dropout.p, dropout.at(kEmbeddingDropoutSite));
  } else {
    be_.copy(x, input, NC);
  }
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int first_block = chunk_first_[static_cast<size_t>(chunk)], count = range.end - range.begin;
  StreamStats* stats = training ? stats_ : nullptr;
  for (int i = 0; i < count; ++i) {
    const auto l = static_cast<size_t>(first_block + i);
    if (!training && layer_ids_[l] == skip_) {
      be_.copy(x + (i + 1) * NC, static_cast<const S*>(x + i * NC), NC);
      continue;
    }
    double branch_sq[2] = {0.0, 0.0};
    before_reading(l + 1);
    block_forward(be_, s, layer_ids_[l], layer_params_[l], x + i * NC, x + (i + 1) * NC, acts(sl, i), scratch_,
                  dropout, stats ? branch_sq : nullptr);
    if (stats) stats->add_forward(layer_ids_[l], be_.sum_squares(x + i * NC, NC), branch_sq);
  }
  if (stats && last) stats->final_act_sq += be_.sum_squares(x + count * NC, NC);
  if (!last) return;
  before_reading(layer_offsets_.size());
  be_.layernorm_forward(sl.final_norm, sl.final_mean, sl.final_rstd, static_cast<const S*>(x + count * NC),
                        p + final_norm_weight_, p + final_norm_bias_, N, s.C);
  // The head has padded_vocab rows; the softmax and the loss see the first vocab columns.
  be_.linear_forward(sl.logits, sl.final_norm, p + head_, nullptr, N, s.C, config_.padded_vocab());
  be_.softmax_xent_forward(sl.losses, sl.logits, sl.lse, sl.targets, N, config_.vocab, config_.padded_vocab());
  be_.add_losses(sl.losses, N);
}

template <class Backend>
std::span<const typename Stage<Backend>::S> Stage<Backend>::output(int index, int chunk, int B) const {
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int64_t NC = int64_t{B} * config_.seq_len * config_.d_model;
  return {slots_[static_cast<size_t>(index)].residual + (range.end - range.begin) * NC, static_cast<size_t>(NC)};
}

template <class Backend>
std::span<const typename Stage<Backend>::S> Stage<Backend>::input_grad(int B) const {
  return {residual_grad_, static_cast<size_t>(int64_t{B} * config_.seq_len * config_.d_model)};
}

template <class Backend>
void Stage<Backend>::backward(int index, int chunk, int B, BackwardPart part, const S* grad_output,
                              const BatchPosition& position, double loss_scale, const GradientsReady& ready) {
  KL_CHECK(part == BackwardPart::kAll || split_, "a split backward needs a stage built for it");
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  Slot& sl = slot(index);
  S* x = sl.residual;
  const A* p = weights();
  S* g = grads_.data();
  S* dres = residual_grad_;
  const BlockDropout dropout = dropout_for(position, true);
  const bool inputs = part != BackwardPart::kWeight, weights = part != BackwardPart::kInput;
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int first = chunk_first_[static_cast<size_t>(chunk)], count = range.end - range.begin;

  if (inputs && layout_.last_chunk(chunk)) {
    // The head's parameter gradients come with the input part: the logits become dL/dlogits.
    be_.softmax_xent_backward(sl.logits, sl.lse, sl.targets, loss_scale, N, config_.vocab, config_.padded_vocab());
    be_.linear_backward(scratch_.dnc, g + head_, nullptr, sl.logits, sl.final_norm, p + head_, N, s.C,
                        config_.padded_vocab());
    be_.zero(dres, NC);
    be_.layernorm_backward(dres, g + final_norm_weight_, g + final_norm_bias_, static_cast<const A*>(scratch_.dnc),
                           static_cast<const S*>(x + count * NC), p + final_norm_weight_, sl.final_mean,
                           sl.final_rstd, N, s.C);
    if (stats_) stats_->final_grad_sq += be_.sum_squares(dres, NC);
  } else if (inputs) {
    be_.copy(dres, grad_output, NC);
  }
  if (ready && weights && layout_.last_chunk(chunk)) ready(final_norm_weight_);
  for (int i = count - 1; i >= 0; --i) {
    const auto l = static_cast<size_t>(first + i);
    if (recompute_) {
      block_forward(be_, s, layer_ids_[l], layer_params_[l], x + i * NC, x + (i + 1) * NC, shared_acts_, scratch_,
                    dropout);
    }
    const BlockOutputGrads<Backend> d = part == BackwardPart::kAll ? BlockOutputGrads<Backend>::in_scratch(scratch_)
                                                                   : sl.out_grads[static_cast<size_t>(i)];
    block_backward(be_, s, layer_ids_[l], layer_params_[l], layer_grads_[l], x + i * NC, acts(sl, i), scratch_,
                   dropout, dres, part, d);
    if (stats_ && inputs) stats_->grad_sq[static_cast<size_t>(layer_ids_[l])] += be_.sum_squares(dres, NC);
    if (ready && weights) ready(layer_offsets_[l]);
  }
  if (!layout_.first_chunk(chunk)) return;
  const int64_t row = int64_t{s.T} * s.C;
  if (inputs) be_.dropout(dres, static_cast<const S*>(dres), B, row, dropout.p, dropout.at(kEmbeddingDropoutSite));
  if (part == BackwardPart::kInput) be_.copy(sl.embed_grad, static_cast<const S*>(dres), NC);  // for the weight part
  if (weights) {
    const S* dx0 = part == BackwardPart::kWeight ? sl.embed_grad : dres;
    be_.embedding_backward(g + token_embedding_, g + position_embedding_, dx0, sl.tokens, B, s.T, s.C);
    if (ready) ready(0);
  }
}

template <class Backend>
std::vector<typename Stage<Backend>::S> Stage<Backend>::logits(int index, int B) {
  return logits(index, 0, int64_t{B} * config_.seq_len);
}

template <class Backend>
std::vector<typename Stage<Backend>::S> Stage<Backend>::logits(int index, int64_t first, int64_t count) {
  KL_CHECK(layout_.has_head(), "logits live on the stage that holds the head");
  const Slot& sl = slot(index);
  const int64_t V = config_.vocab, Vp = config_.padded_vocab();
  typename Backend::template Buffer<A> out = be_.template alloc<A>(count * Vp);
  be_.linear_forward(out.data(), sl.final_norm + first * config_.d_model, weights() + head_, nullptr,
                     static_cast<int>(count), config_.d_model, static_cast<int>(Vp));
  std::vector<A> act(static_cast<size_t>(count * Vp));
  be_.download(act.data(), static_cast<const A*>(out.data()), count * Vp);
  std::vector<S> logits(static_cast<size_t>(count * V));
  for (int64_t n = 0; n < count; ++n) {  // the padded columns left out
    std::copy_n(act.begin() + n * Vp, V, logits.begin() + n * V);
  }
  return logits;
}

#define KL_INSTANTIATE_STAGE(Backend) template class Stage<Backend>;

}  // namespace kl::pipeline
