// One Transformer block: an attention branch, then an MLP branch, each joined to the residual
// stream x as model.residual says (models/residual.h); for pre-norm
//   x_mid = x_in  + Dropout(Attn(LN1(x_in)))
//   x_out = x_mid + Dropout(MLP(LN2(x_mid)))
// Forward and backward side by side in block.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "models/params.h"
#include "models/residual.h"
#include "src/config/config.h"
#include "src/kernels/cpu/ops.h"

namespace kl {

struct BlockShape {
  int B, T, C, NH, F;
  Residual residual = Residual::kPreNorm;
  double alpha = 1.0;  // deepnorm's weight on the identity path
  int64_t tokens() const { return int64_t{B} * T; }
};
BlockShape block_shape(const ModelConfig& model, int B);

// A block's tensors, resolved once from the parameter table (P = const T* or T*); those the
// variant does not have are null (rezero: no LayerNorm; scale: rezero and layerscale; gate:
// highway). For post-norm variants ln1 and ln2 normalise the sums.
template <class P>
struct BlockTensors {
  P ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;
  P attn_scale, mlp_scale, attn_gate_w, attn_gate_b, mlp_gate_w, mlp_gate_b;
};
template <class P>
BlockTensors<P> block_tensors(const ParamTable& table, P base, int layer);

// What the backward pass needs from the forward pass of one block. ln1 and ln2 hold the branch
// inputs' LayerNorm (pre-norm variants) or the sums before the LayerNorm (post-norm variants).
template <class T>
struct BlockActivations {
  T *ln1, *ln1_mean, *ln1_rstd;  // [N,C], [N], [N]
  T* qkv;                        // [N,3C]
  T* probs;                      // [B,NH,T,T]
  T* att;                        // [N,C]
  T* x_mid;                      // [N,C]
  T *ln2, *ln2_mean, *ln2_rstd;  // [N,C], [N], [N]
  T *fc, *gelu;                  // [N,F]
  T *attn_kept, *mlp_kept;       // [N,C] each branch's D(F) before its scale or gate (else null)
  T *attn_gate, *mlp_gate;       // [N,C] highway's gates (else null)
  static int64_t size(const BlockShape& s);  // elements
  static BlockActivations carve(T* memory, const BlockShape& s);
};

// Buffers shared by every block, used only within one block's forward or backward.
template <class T>
struct BlockScratch {
  T* branch;  // [N,C]   a branch's output / the gradient of one
  T* dnc;     // [N,C]   gradient of the attention output, then of a LayerNorm output
  T* dqkv;    // [N,3C]
  T* dprobs;  // [B,NH,T,T]
  T* dff;     // [N,F]
  static int64_t size(const BlockShape& s);
  static BlockScratch carve(T* memory, const BlockShape& s);
};

// The gradients of each parametrised op's output in a block's backward pass. The full backward
// pass keeps them in scratch (in_scratch); the zero-bubble schedule runs the input half first,
// which leaves them in memory of their own (carve), and the weight half later reads them there.
template <class T>
struct BlockOutputGrads {
  T* mlp_proj;   // [N,C]
  T* mlp_fc;     // [N,F] (after GELU's backward: the gradient of the fc output)
  T* ln2;        // [N,C]
  T* attn_proj;  // [N,C]
  T* attn_qkv;   // [N,3C]
  T* ln1;        // [N,C]
  static int64_t size(const BlockShape& s);
  static BlockOutputGrads carve(T* memory, const BlockShape& s);
  static BlockOutputGrads in_scratch(const BlockScratch<T>& scratch);
};

// Which part of a block's backward pass to run: all of it, the input gradient only (dres, and the
// output gradients left in BlockOutputGrads), or the parameter gradients only (from those). The
// parts exist for pre-norm blocks only (config refuses zb1 with another variant).
enum class BackwardPart { kAll, kInput, kWeight };

// Dropout for block `layer`: sites 1 + 2 layer (attention) and 2 + 2 layer (MLP); site 0 is the
// embedding's.
inline constexpr uint32_t kEmbeddingDropoutSite = 0;
struct BlockDropout {
  double p = 0.0;
  cpu::DropoutKey key;  // the batch position; the site is chosen per dropout with at()
  // Stochastic depth: block l's branches are dropped per sample with probability
  // path_last x (l + 1) / layers, kept ones scaled by 1 / (1 - that).
  double path_last = 0.0;
  int layers = 1;

  static BlockDropout make(const ModelConfig& model, uint64_t seed, int64_t step, int64_t first_sample,
                           bool training);
  cpu::DropoutKey at(uint32_t site) const {
    cpu::DropoutKey k = key;
    k.site = site;
    return k;
  }
  double path_drop(int layer) const { return path_last * (layer + 1) / layers; }
};

// `branch_sq` (optional, 2 values): += the sums of squares of the attention and MLP branch
// outputs D(F), for diagnostics.
template <class T>
void block_forward(const BlockShape& s, int layer, const BlockTensors<const T*>& w, const T* x_in,
                   T* x_out, const BlockActivations<T>& a, const BlockScratch<T>& scratch,
                   const BlockDropout& dropout, double* branch_sq = nullptr);

// Per-block measurements of the residual stream over one training step, for run.diag_every: sums
// of squares, so that micro-batches, data-parallel replicas and pipeline stages add up by summing.
struct StreamStats {
  std::vector<double> grad_sq;  // [layers] |dL/dx_l|^2, x_l the input of block l (global index)
  std::vector<double> act_sq;   // [layers] |x_l|^2
  std::vector<double> attn_sq, mlp_sq;  // [layers] |D(F)|^2 of each branch
  double final_grad_sq = 0, final_act_sq = 0;  // at x_L, the stream's output
  void reset(int layers);
  void add_forward(int layer, double input_sq, const double branch_sq[2]) {
    act_sq[static_cast<size_t>(layer)] += input_sq;
    attn_sq[static_cast<size_t>(layer)] += branch_sq[0];
    mlp_sq[static_cast<size_t>(layer)] += branch_sq[1];
  }
};

// dres holds dL/dx_out on entry and dL/dx_in on return (the residual stream's gradient flows
// through the identity path untouched and each branch adds its share). With kWeight, dres is not
// touched and `d` must hold what a kInput pass left there.
template <class T>
void block_backward(const BlockShape& s, int layer, const BlockTensors<const T*>& w,
                    const BlockTensors<T*>& grad, const T* x_in, const BlockActivations<T>& a,
                    const BlockScratch<T>& scratch, const BlockDropout& dropout, T* dres,
                    BackwardPart part, const BlockOutputGrads<T>& d);

}  // namespace kl
