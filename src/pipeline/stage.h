// One pipeline stage's share of the model: its chunks of blocks (global chunk c x stages + stage for
// local chunk c), with the embeddings on the stage that holds global chunk 0 and the final norm, LM
// head and loss on the one that holds the last; their parameters and gradients (a flat buffer laid
// out by the stage's ParamTable, under global names); and the activation buffers for the
// micro-batch chunks the schedule holds at once, all allocated at construction.
//
// A buffer ("slot") holds one micro-batch chunk from its forward until its backward (the weight
// part, when the backward is split) is done: its tokens, the residual stream at every block
// boundary of the chunk, each block's saved tensors (none under recomputation), the head's tensors
// on the last chunk, and for a split backward the output gradients the weight part reads.
//
// The definitions are in stage_impl.h, instantiated per backend (stage.cpp: the CPU's).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/backend.h"
#include "models/block.h"
#include "models/gpt.h"
#include "models/params.h"
#include "src/config/config.h"
#include "src/pipeline/partition.h"

namespace kl::pipeline {

struct StageLayout {
  int stage = 0, stages = 1, chunks = 1;  // chunks: per stage (parallel.virtual)
  std::vector<LayerRange> ranges;         // this stage's chunks, in local order

  int global_chunk(int local) const { return local * stages + stage; }
  bool first_chunk(int local) const { return global_chunk(local) == 0; }
  bool last_chunk(int local) const { return global_chunk(local) == stages * chunks - 1; }
  bool has_embeddings() const { return stage == 0; }
  bool has_head() const { return stage == stages - 1; }
  std::vector<int> layers() const;  // every block of the stage, ascending
};

// Stage `stage`'s chunks from the partition of config (parallel.pp x parallel.virtual chunks,
// parallel.stage_layers or the FLOP cost model).
StageLayout stage_layout(const Config& config, int stage);

// One stage's walk over its chunks, on `Backend` (models/backend.h): the only model walk there is.
// Parameters, gradients and activations live in the backend's memory; spans and pointers below
// point there.
template <class Backend>
class Stage {
 public:
  using A = typename Backend::Act;
  using S = typename Backend::Acc;

  // `buffers`: the schedule's declared count. `split_backward`: the backward runs as an input part
  // and a weight part (zb1). Buffers are padded to a multiple of `buffer_multiple` (ZeRO-1).
  Stage(Backend& backend, const ModelConfig& model, StageLayout layout, int micro_batch, int buffers, bool recompute,
        bool split_backward, int64_t buffer_multiple);

  Backend& backend() { return be_; }
  const ModelConfig& config() const { return config_; }
  const StageLayout& layout() const { return layout_; }
  const ParamTable& table() const { return table_; }
  // The master parameters and their gradients (Acc), padded to the buffer multiple.
  std::span<S> params() { return {params_.data(), static_cast<size_t>(params_.size())}; }
  std::span<S> grads() { return {grads_.data(), static_cast<size_t>(grads_.size())}; }
  // After the master parameters changed (an update, a restore): refreshes the Act copy the passes
  // read, where the backend keeps one.
  void params_changed();
  int buffers() const { return buffers_; }
  int micro_batch() const { return micro_batch_; }  // the most sequences one pass takes
  int64_t buffer_bytes() const { return slot_sizes_.act * int64_t(sizeof(A)) + slot_sizes_.acc * int64_t(sizeof(S)); }
  // First element of local chunk `chunk`'s gradients: its first block, or 0 for the chunk that
  // carries the embeddings.
  int64_t chunk_offset(int chunk) const;

  void init(uint64_t seed);
  // Evaluation passes treat block `layer` (global index) as removed (-1: none): lesion study.
  void skip_block(int layer) { skip_ = layer; }
  // While set, training passes add their blocks' measurements to `stats` (diagnostics).
  void collect(StreamStats* stats) { stats_ = stats; }
  void zero_grads() { be_.zero(grads_.data(), static_cast<int64_t>(grads_.size())); }

  // Forward of B sequences through local chunk `chunk` into buffer `slot`. `input` is the previous
  // chunk's output [B,T,C] (ignored on global chunk 0, which embeds the tokens). `tokens` and
  // `targets` ([B,T], host memory) are kept in the slot for the backward pass. On the last global
  // chunk the per-token losses are added to the sum take_loss_sum() returns.
  void forward(int slot, int chunk, int B, const S* input, const int32_t* tokens, const int32_t* targets,
               const BatchPosition& position, bool training, const ParamsNeeded& needed = {});
  // The chunk's output in `slot`, the residual stream to send on [B,T,C].
  std::span<const S> output(int slot, int chunk, int B) const;
  // The sum of the per-token losses of the forward passes since the last call (0 but on the stage
  // that holds the last chunk). Waits for the backend.
  double take_loss_sum() { return be_.take_loss_sum(); }

  // Backward (all of it, or one part) of what `slot` holds. `grad_output` is dL/d(output) from the
  // next chunk (ignored on the last global chunk: the loss starts it, dL/dlogit scaled by
  // `loss_scale` per token). After kAll or kInput, input_grad() is dL/d(input) [B,T,C]. `ready`
  // is told, after each block, from which gradient offset on this pass leaves nothing to add.
  void backward(int slot, int chunk, int B, BackwardPart part, const S* grad_output, const BatchPosition& position,
                double loss_scale, const GradientsReady& ready);
  std::span<const S> input_grad(int B) const;

  // The logits [B,T,V] of the last forward pass through `slot` (last chunk), recomputed from the
  // final norm into host memory, the true vocabulary only (no padded columns): for tests.
  std::vector<S> logits(int slot, int B);
  // The same for `count` tokens from token `first` (of B x T) on: [count, V] (sampling).
  std::vector<S> logits(int slot, int64_t first, int64_t count);

 private:
  struct Slot {
    S* residual;  // [layers + 1][N,C]
    std::vector<BlockActivations<Backend>> acts;       // per block (empty under recompute)
    std::vector<BlockOutputGrads<Backend>> out_grads;  // per block (split backward only)
    A *final_norm = nullptr, *logits = nullptr;        // last chunk only: [N,C], [N,V] (the
                                                       // softmax, then dL/dlogits, on the CPU)
    S *final_mean = nullptr, *final_rstd = nullptr, *losses = nullptr, *lse = nullptr;  // [N] each
    S* embed_grad = nullptr;  // [N,C] dL/dx_0 between the two backward parts (split, global chunk 0)
    int32_t *tokens, *targets;  // [N] each
  };

  BlockShape shape(int B) const;
  BlockDropout dropout_for(const BatchPosition& position, bool training) const;
  const BlockActivations<Backend>& acts(const Slot& slot, int i) const;
  Slot& slot(int index);
  const A* weights() const;

  Backend& be_;
  ModelConfig config_;
  StageLayout layout_;
  ParamTable table_;
  int micro_batch_, buffers_;
  bool recompute_, split_;
  typename Backend::template Buffer<S> params_, grads_;
  typename Backend::template Buffer<A> weight_copy_;  // the Act copy, where Act is not Acc
  std::vector<int> layer_ids_;  // every block of the stage, ascending
  std::vector<BlockTensors<const A*>> layer_params_;  // indexed like layer_ids_
  std::vector<BlockTensors<S*>> layer_grads_;
  std::vector<int64_t> layer_offsets_;
  std::vector<int> chunk_first_;  // index into layer_ids_ of each chunk's first block
  int64_t token_embedding_ = -1, position_embedding_ = -1, final_norm_weight_ = -1,
          final_norm_bias_ = -1, head_ = -1;

  Sizes slot_sizes_;
  typename Backend::template Buffer<A> act_memory_;
  typename Backend::template Buffer<S> acc_memory_;
  typename Backend::template Buffer<int32_t> token_memory_;
  std::vector<Slot> slots_;
  BlockActivations<Backend> shared_acts_{};  // one block's tensors, under recomputation
  BlockScratch<Backend> scratch_{};
  S* residual_grad_ = nullptr;  // [N,C] dL/dx flowing down the stream
  StreamStats* stats_ = nullptr;
  int skip_ = -1;
};

}  // namespace kl::pipeline
