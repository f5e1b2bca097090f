// One pipeline stage's share of the model: its chunks of blocks (global chunk c x stages + stage for
// local chunk c), with the embeddings on the stage that holds global chunk 0 and the final norm, LM
// head and loss on the one that holds the last; their parameters and gradients (a flat buffer laid
// out by the stage's ParamTable, under global names); and the activation buffers for the
// micro-batch chunks the schedule holds at once, all allocated at construction.
//
// A buffer ("slot") holds one micro-batch chunk from its forward until its backward (the weight
// part, when the backward is split) is done: the residual stream at every block boundary of the
// chunk, each block's saved tensors (none under recomputation), the head's tensors on the last
// chunk, and for a split backward the output gradients the weight part reads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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

class Stage {
 public:
  // `buffers`: the schedule's declared count. `split_backward`: the backward runs as an input part
  // and a weight part (zb1). Buffers are padded to a multiple of `buffer_multiple` (ZeRO-1).
  Stage(const ModelConfig& model, StageLayout layout, int micro_batch, int buffers, bool recompute,
        bool split_backward, int64_t buffer_multiple);

  const ModelConfig& config() const { return config_; }
  const StageLayout& layout() const { return layout_; }
  const ParamTable& table() const { return table_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  int buffers() const { return buffers_; }
  int64_t buffer_bytes() const { return static_cast<int64_t>(slot_floats_ * sizeof(float)); }
  // First element of local chunk `chunk`'s gradients: its first block, or 0 for the chunk that
  // carries the embeddings.
  int64_t chunk_offset(int chunk) const;

  void init(uint64_t seed) { init_parameters(table_, seed, params_.data()); }
  // Evaluation passes treat block `layer` (global index) as removed (-1: none): lesion study.
  void skip_block(int layer) { skip_ = layer; }
  // While set, training passes add their blocks' measurements to `stats` (diagnostics).
  void collect(StreamStats* stats) { stats_ = stats; }
  void zero_grads();

  // Forward of B sequences through local chunk `chunk` into buffer `slot`. `input` is the previous
  // chunk's output [B,T,C] (ignored on global chunk 0, which embeds `tokens`). Returns the mean loss
  // over the micro-batch on the last global chunk, 0 elsewhere.
  double forward(int slot, int chunk, int B, const float* input, const int32_t* tokens,
                 const int32_t* targets, const BatchPosition& position, bool training);
  // The chunk's output in `slot`, the residual stream to send on [B,T,C].
  std::span<const float> output(int slot, int chunk, int B) const;

  // Backward (all of it, or one part) of what `slot` holds. `grad_output` is dL/d(output) from the
  // next chunk (ignored on the last global chunk: the loss starts it, dL/dlogit scaled by
  // `loss_scale` per token). After kAll or kInput, input_grad() is dL/d(input) [B,T,C]. `ready`
  // is told, after each block, from which gradient offset on this pass leaves nothing to add.
  void backward(int slot, int chunk, int B, BackwardPart part, const float* grad_output,
                const int32_t* tokens, const int32_t* targets, const BatchPosition& position,
                double loss_scale, const GradientsReady& ready);
  std::span<const float> input_grad(int B) const;

 private:
  struct Slot {
    float* residual;  // [layers + 1][N,C]
    std::vector<BlockActivations<float>> acts;       // per block (empty under recompute)
    std::vector<BlockOutputGrads<float>> out_grads;  // per block (split backward only)
    float *final_norm, *final_mean, *final_rstd, *probs, *losses;  // last chunk only
    float* embed_grad;  // [N,C] dL/dx_0 between the two backward parts (split, global chunk 0)
  };

  BlockShape shape(int B) const;
  BlockDropout dropout_for(const BatchPosition& position, bool training) const;
  const BlockActivations<float>& acts(const Slot& slot, int i) const;
  Slot& slot(int index);

  ModelConfig config_;
  StageLayout layout_;
  ParamTable table_;
  int micro_batch_, buffers_;
  bool recompute_, split_;
  std::vector<float> params_, grads_;
  std::vector<int> layer_ids_;  // every block of the stage, ascending
  std::vector<BlockTensors<const float*>> layer_params_;  // indexed like layer_ids_
  std::vector<BlockTensors<float*>> layer_grads_;
  std::vector<int64_t> layer_offsets_;
  std::vector<int> chunk_first_;  // index into layer_ids_ of each chunk's first block
  int64_t token_embedding_ = -1, position_embedding_ = -1, final_norm_weight_ = -1,
          final_norm_bias_ = -1, head_ = -1;

  int64_t slot_floats_ = 0;
  std::vector<float> slot_memory_;
  std::vector<Slot> slots_;
  std::vector<float> shared_act_memory_;  // one block's tensors, under recomputation
  BlockActivations<float> shared_acts_{};
  std::vector<float> scratch_memory_;
  BlockScratch<float> scratch_{};
  std::vector<float> residual_grad_;  // [N,C] dL/dx flowing down the stream
  StreamStats* stats_ = nullptr;
  int skip_ = -1;
};

}  // namespace kl::pipeline
