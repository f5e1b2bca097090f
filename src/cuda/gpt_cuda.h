// The GPT model of models/gpt.h on one GPU: the same parameter table and flat buffer layout, the
// same dropout masks, the same forward and backward pass of pre-norm blocks, on the kernels of
// src/kernels/cuda. T is the activation and parameter-copy type (float or bf16); the fp32 master
// parameters and the fp32 gradients live in flat device buffers laid out by the ParamTable, so
// host copies of them are the CPU model's buffers element for element.
//
// Supported: model.residual = prenorm, dropout, tied or untied head, parallel.recompute = block,
// the lesion study's skipped block. Not (config.cpp refuses them with run.device = cuda): the other
// residual variants, stochastic depth, per-layer diagnostics.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "models/block.h"
#include "models/gpt.h"
#include "models/params.h"
#include "src/config/config.h"
#include "src/cuda/device.h"
#include "src/kernels/cuda/cublaslt.h"

namespace kl::cuda {

template <class T>
class CudaGpt {
 public:
  // Allocates everything on the current device; `stream` orders all of its work.
  CudaGpt(const ModelConfig& config, int micro_batch, bool recompute, int64_t buffer_multiple, bool tf32,
          cudaStream_t stream);
  ~CudaGpt();
  CudaGpt(const CudaGpt&) = delete;
  CudaGpt& operator=(const CudaGpt&) = delete;

  const ParamTable& table() const { return table_; }
  int64_t buffer_elements() const { return master_.size(); }
  cudaStream_t stream() const { return stream_; }

  // fp32 master parameters and gradients on the device (buffer_elements() each).
  float* master() { return master_.data(); }
  float* grads() { return grads_.data(); }
  // After the master parameters changed: refreshes the copy the passes read (bf16 only).
  void params_changed();
  void zero_grads() { grads_.zero(stream_); }

  // Forward and backward of B <= micro_batch sequences (host tokens [B, seq_len]): parameter
  // gradients accumulate, dL/dlogit scaled by loss_scale; the per-token losses are added to the
  // running sum that take_loss_sum() returns.
  void forward_backward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position,
                        double loss_scale);
  // Forward only, without dropout; losses added to the running sum.
  void evaluate(const int32_t* inputs, const int32_t* targets, int B);
  // Waits for the stream, returns the sum of per-token losses since the last call, resets it.
  double take_loss_sum();

  void skip_block(int layer) { skip_ = layer; }

 private:
  struct Acts {  // one block's saved activations
    T *ln1, *qkv, *probs, *att, *x_mid, *ln2, *fc, *gelu;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;
  };
  void forward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position, bool training);
  void backward(int B, const BatchPosition& position, double loss_scale);
  void block_forward(const BlockShape& s, int layer, const T* x_in, T* x_out, const Acts& a,
                     const BlockDropout& dropout);
  void block_backward(const BlockShape& s, int layer, const T* x_in, const Acts& a, const BlockDropout& dropout);
  const Acts& acts(int layer) const { return acts_[recompute_ ? 0 : static_cast<size_t>(layer)]; }
  const T* weights() const;

  ModelConfig config_;
  ParamTable table_;
  int micro_batch_;
  bool recompute_;
  cudaStream_t stream_;
  std::unique_ptr<Blas> blas_;
  DeviceBuffer<float> master_, grads_;
  DeviceBuffer<T> copy_;  // bf16: the parameters the passes read; fp32: unused (master_ is read)
  std::vector<BlockTensors<const T*>> layer_params_;
  std::vector<BlockTensors<float*>> layer_grads_;
  int64_t token_embedding_, position_embedding_, final_norm_weight_, final_norm_bias_, head_;

  DeviceBuffer<T> residual_, acts_memory_, scratch_;
  DeviceBuffer<float> stats_memory_, dres_, final_stats_, losses_, lse_;
  DeviceBuffer<double> loss_sum_;
  DeviceBuffer<int32_t> tokens_;  // inputs then targets
  // Pinned host staging for the tokens, two in turn: a copy is truly asynchronous only from pinned
  // memory, and a buffer is refilled only once its previous copy has left it.
  struct PinnedTokens;
  std::unique_ptr<PinnedTokens> pinned_;
  std::vector<Acts> acts_;
  T *branch_, *dnc_, *dqkv_, *dprobs_, *dff_, *final_norm_, *logits_;
  int skip_ = -1;
};

}  // namespace kl::cuda
