// Forward and backward of one stage's chunks. The arithmetic is GptModel's (models/gpt.cpp) op for
// op, so a pipeline reproduces the single process to rounding; only where tensors live differs.
//
// Accumulation rule: parameter gradients accumulate (+=) across micro-batches; residual_grad_ is
// assigned at the top of each chunk's backward and accumulates through its blocks.
#include "src/pipeline/stage.h"

#include <algorithm>

#include "src/kernels/cpu/ops.h"
#include "src/util/error.h"

namespace kl::pipeline {

std::vector<int> StageLayout::layers() const {
  std::vector<int> all;
  for (const LayerRange& r : ranges) {
    for (int l = r.begin; l < r.end; ++l) all.push_back(l);
  }
  return all;
}

StageLayout stage_layout(const Config& c, int stage) {
  StageLayout layout;
  layout.stage = stage;
  layout.stages = c.parallel.pp;
  layout.chunks = c.parallel.virtual_chunks;
  const auto global = partition_layers(c.model, layout.stages * layout.chunks, stage_layer_counts(c));
  for (int local = 0; local < layout.chunks; ++local) {
    layout.ranges.push_back(global[static_cast<size_t>(layout.global_chunk(local))]);
  }
  return layout;
}

Stage::Stage(const ModelConfig& model, StageLayout layout, int micro_batch, int buffers,
             bool recompute, bool split_backward, int64_t buffer_multiple)
    : config_(model),
      layout_(std::move(layout)),
      table_(model, layout_.layers(), layout_.has_embeddings(), layout_.has_head()),
      micro_batch_(micro_batch),
      buffers_(buffers),
      recompute_(recompute),
      split_(split_backward),
      layer_ids_(layout_.layers()) {
  KL_CHECK(buffers_ >= 1, "a stage needs at least one activation buffer");
  const int64_t padded = (table_.buffer_size() + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
  params_.assign(static_cast<size_t>(padded), 0.0f);
  grads_.assign(params_.size(), 0.0f);
  for (int l : layer_ids_) {
    layer_params_.push_back(block_tensors<const float*>(table_, params_.data(), l));
    layer_grads_.push_back(block_tensors<float*>(table_, grads_.data(), l));
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
  const int64_t N = s.tokens(), NC = N * s.C;
  const bool head = layout_.has_head(), embed_grad = split_ && layout_.has_embeddings();
  slot_floats_ = NC * (max_layers + 1) + (recompute_ ? 0 : max_layers * BlockActivations<float>::size(s)) +
                 (split_ ? max_layers * BlockOutputGrads<float>::size(s) : 0) +
                 (head ? NC + 3 * N + N * config_.vocab : 0) + (embed_grad ? NC : 0);
  slot_memory_.assign(static_cast<size_t>(slot_floats_ * buffers_), 0.0f);
  for (int i = 0; i < buffers_; ++i) {
    float* m = slot_memory_.data() + slot_floats_ * i;
    auto take = [&m](int64_t n) { float* p = m; m += n; return p; };
    Slot slot{};
    slot.residual = take(NC * (max_layers + 1));
    for (int l = 0; l < max_layers; ++l) {
      if (!recompute_) slot.acts.push_back(BlockActivations<float>::carve(take(BlockActivations<float>::size(s)), s));
      if (split_) slot.out_grads.push_back(BlockOutputGrads<float>::carve(take(BlockOutputGrads<float>::size(s)), s));
    }
    if (head) {
      slot.final_norm = take(NC);
      slot.final_mean = take(N);
      slot.final_rstd = take(N);
      slot.losses = take(N);
      slot.probs = take(N * config_.vocab);
    }
    if (embed_grad) slot.embed_grad = take(NC);
    slots_.push_back(std::move(slot));
  }
  if (recompute_) {
    shared_act_memory_.assign(static_cast<size_t>(BlockActivations<float>::size(s)), 0.0f);
    shared_acts_ = BlockActivations<float>::carve(shared_act_memory_.data(), s);
  }
  scratch_memory_.assign(static_cast<size_t>(BlockScratch<float>::size(s)), 0.0f);
  scratch_ = BlockScratch<float>::carve(scratch_memory_.data(), s);
  residual_grad_.assign(static_cast<size_t>(NC), 0.0f);
}

BlockShape Stage::shape(int B) const { return block_shape(config_, B); }

BlockDropout Stage::dropout_for(const BatchPosition& position, bool training) const {
  return BlockDropout::make(config_, position.seed, position.step, position.first_sample, training);
}

const BlockActivations<float>& Stage::acts(const Slot& slot, int i) const {
  return recompute_ ? shared_acts_ : slot.acts[static_cast<size_t>(i)];
}

Stage::Slot& Stage::slot(int index) {
  KL_CHECK(index >= 0 && index < buffers_, "activation buffer index out of range");
  return slots_[static_cast<size_t>(index)];
}

int64_t Stage::chunk_offset(int chunk) const {
  return chunk == 0 ? 0 : layer_offsets_[static_cast<size_t>(chunk_first_[static_cast<size_t>(chunk)])];
}

void Stage::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

double Stage::forward(int index, int chunk, int B, const float* input, const int32_t* tokens,
                      const int32_t* targets, const BatchPosition& position, bool training) {
  KL_CHECK(B >= 1 && B <= micro_batch_, "batch larger than the stage's micro-batch buffers");
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  Slot& sl = slot(index);
  float* x = sl.residual;
  const float* p = params_.data();
  const BlockDropout dropout = dropout_for(position, training);
  if (layout_.first_chunk(chunk)) {
    cpu::embedding_forward(x, tokens, p + token_embedding_, p + position_embedding_, B, s.T, s.C);
    cpu::dropout_forward(x, x, B, int64_t{s.T} * s.C, dropout.p, dropout.at(kEmbeddingDropoutSite));
  } else {
    std::copy(input, input + NC, x);
  }
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int first = chunk_first_[static_cast<size_t>(chunk)], count = range.end - range.begin;
  StreamStats* stats = training ? stats_ : nullptr;
  for (int i = 0; i < count; ++i) {
    const auto l = static_cast<size_t>(first + i);
    if (!training && layer_ids_[l] == skip_) {
      std::copy(x + i * NC, x + (i + 1) * NC, x + (i + 1) * NC);
      continue;
    }
    double branch_sq[2] = {0.0, 0.0};
    block_forward(s, layer_ids_[l], layer_params_[l], x + i * NC, x + (i + 1) * NC, acts(sl, i), scratch_, dropout,
                  stats ? branch_sq : nullptr);
    if (stats) stats->add_forward(layer_ids_[l], cpu::sum_squares(x + i * NC, NC), branch_sq);
  }
  if (stats && layout_.last_chunk(chunk)) stats->final_act_sq += cpu::sum_squares(x + count * NC, NC);
  if (!layout_.last_chunk(chunk)) return 0.0;
  cpu::layernorm_forward(sl.final_norm, sl.final_mean, sl.final_rstd, x + count * NC, p + final_norm_weight_,
                         p + final_norm_bias_, N, s.C);
  cpu::linear_forward<float>(sl.probs, sl.final_norm, p + head_, nullptr, N, s.C, config_.vocab);
  cpu::softmax_xent_forward(sl.losses, sl.probs, sl.probs, targets, N, config_.vocab);
  double sum = 0.0;
  for (int n = 0; n < N; ++n) sum += sl.losses[n];
  return sum / N;
}

std::span<const float> Stage::output(int index, int chunk, int B) const {
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int64_t NC = int64_t{B} * config_.seq_len * config_.d_model;
  return {slots_[static_cast<size_t>(index)].residual + (range.end - range.begin) * NC, static_cast<size_t>(NC)};
}

std::span<const float> Stage::input_grad(int B) const {
  return {residual_grad_.data(), static_cast<size_t>(int64_t{B} * config_.seq_len * config_.d_model)};
}

void Stage::backward(int index, int chunk, int B, BackwardPart part, const float* grad_output,
                     const int32_t* tokens, const int32_t* targets, const BatchPosition& position,
                     double loss_scale, const GradientsReady& ready) {
  KL_CHECK(part == BackwardPart::kAll || split_, "a split backward needs a stage built for it");
  const BlockShape s = shape(B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  Slot& sl = slot(index);
  float* x = sl.residual;
  const float* p = params_.data();
  float* g = grads_.data();
  float* dres = residual_grad_.data();
  const BlockDropout dropout = dropout_for(position, true);
  const bool inputs = part != BackwardPart::kWeight, weights = part != BackwardPart::kInput;
  const LayerRange& range = layout_.ranges[static_cast<size_t>(chunk)];
  const int first = chunk_first_[static_cast<size_t>(chunk)], count = range.end - range.begin;

  if (inputs && layout_.last_chunk(chunk)) {
    // The head's parameter gradients come with the input part: probs becomes dL/dlogits in place.
    cpu::softmax_xent_backward(sl.probs, sl.probs, targets, float(loss_scale), N, config_.vocab);
    cpu::linear_backward<float>(scratch_.dnc, g + head_, nullptr, sl.probs, sl.final_norm, p + head_, N,
                                s.C, config_.vocab);
    std::fill(dres, dres + NC, 0.0f);
    cpu::layernorm_backward(dres, g + final_norm_weight_, g + final_norm_bias_, scratch_.dnc, x + count * NC,
                            p + final_norm_weight_, sl.final_mean, sl.final_rstd, N, s.C);
    if (stats_) stats_->final_grad_sq += cpu::sum_squares(dres, NC);
  } else if (inputs) {
    std::copy(grad_output, grad_output + NC, dres);
  }
  if (ready && weights && layout_.last_chunk(chunk)) ready(final_norm_weight_);
  for (int i = count - 1; i >= 0; --i) {
    const auto l = static_cast<size_t>(first + i);
    if (recompute_) {
      block_forward(s, layer_ids_[l], layer_params_[l], x + i * NC, x + (i + 1) * NC, shared_acts_, scratch_, dropout);
    }
    const BlockOutputGrads<float> d = part == BackwardPart::kAll ? BlockOutputGrads<float>::in_scratch(scratch_)
                                                                 : sl.out_grads[static_cast<size_t>(i)];
    block_backward(s, layer_ids_[l], layer_params_[l], layer_grads_[l], x + i * NC, acts(sl, i), scratch_,
                   dropout, dres, part, d);
    if (stats_ && inputs) stats_->grad_sq[static_cast<size_t>(layer_ids_[l])] += cpu::sum_squares(dres, NC);
    if (ready && weights) ready(layer_offsets_[l]);
  }
  if (!layout_.first_chunk(chunk)) return;
  const int64_t row = int64_t{s.T} * s.C;
  if (inputs) cpu::dropout_backward(dres, dres, B, row, dropout.p, dropout.at(kEmbeddingDropoutSite));
  if (part == BackwardPart::kInput) std::copy(dres, dres + NC, sl.embed_grad);  // for the weight part
  if (weights) {
    const float* dx0 = part == BackwardPart::kWeight ? sl.embed_grad : dres;
    cpu::embedding_backward(g + token_embedding_, g + position_embedding_, dx0, tokens, B, s.T, s.C);
    if (ready) ready(0);
  }
}

}  // namespace kl::pipeline
