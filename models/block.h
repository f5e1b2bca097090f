// One Transformer block: an attention branch, then an MLP branch, each joined to the residual
// stream x as model.residual says (models/residual.h); for pre-norm
//   x_mid = x_in  + Dropout(Attn(LN1(x_in)))
//   x_out = x_mid + Dropout(MLP(LN2(x_mid)))
// Forward and backward side by side in block_impl.h, a template over the backend
// (models/backend.h) instantiated once per backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/params.h"
#include "models/residual.h"
#include "src/config/config.h"
#include "src/kernels/cpu/ops.h"
#include "src/util/rng.h"  // KL_HOST_DEVICE

namespace kl {

struct BlockShape {
  int B, T, C, NH, F;
  Residual residual = Residual::kPreNorm;
  double alpha = 1.0;  // deepnorm's weight on the identity path
  double branch_scale = 1.0;  // model.depth_scaling's multiplier (L0 / L)^alpha on every branch
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
BlockTensors<P> block_tensors(const ParamTable& table, P base, int layer) {
  const std::string p = ParamTable::layer_prefix(layer);
  auto at = [&](const char* name) -> P {
    const ParamSpec* spec = table.find(p + name);
    return spec ? base + spec->offset : nullptr;
  };
  return {at("ln1.weight"),       at("ln1.bias"),         at("attn.qkv.weight"),  at("attn.qkv.bias"),
          at("attn.proj.weight"), at("attn.proj.bias"),   at("ln2.weight"),       at("ln2.bias"),
          at("mlp.fc.weight"),    at("mlp.fc.bias"),      at("mlp.proj.weight"),  at("mlp.proj.bias"),
          at("attn.scale"),       at("mlp.scale"),        at("attn.gate.weight"), at("attn.gate.bias"),
          at("mlp.gate.weight"),  at("mlp.gate.bias")};
}

// Element counts of a piece of memory carved into Act and Acc tensors (models/backend.h).
struct Sizes {
  int64_t act = 0, acc = 0;
  Sizes operator*(int64_t k) const { return {act * k, acc * k}; }
  Sizes operator+(const Sizes& o) const { return {act + o.act, acc + o.acc}; }
};

// Hands out consecutive pieces of an Act and an Acc region.
template <class Backend>
struct Carver {
  typename Backend::Act* act;
  typename Backend::Acc* acc;
  typename Backend::Act* take_act(int64_t n) { auto* p = act; act += n; return p; }
  typename Backend::Acc* take_acc(int64_t n) { auto* p = acc; acc += n; return p; }
};

// What the backward pass needs from the forward pass of one block. Pre-norm variants keep each
// branch's LayerNorm output (ln1, ln2); post-norm variants the sums before their LayerNorm (sum1,
// sum2). in1, in2: a branch's input u as Act, for variants whose F or gate reads u itself, when
// Act differs from Acc (else null: u is read where it is).
template <class Backend>
struct BlockActivations {
  using A = typename Backend::Act;
  using S = typename Backend::Acc;
  A *ln1, *ln2;                              // [N,C] pre-norm variants
  S *sum1, *sum2;                            // [N,C] post-norm variants
  S *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;  // [N] each
  A* qkv;                                    // [N,3C]
  A* attn_stash;  // what attention keeps for its backward pass: Backend::attention_stash_elems
                  // (the CPU: each row's log-sum-exp [B,NH,T]; CUDA: the softmax [B,NH,T,T])
  A* att;                                    // [N,C]
  S* x_mid;                                  // [N,C] the stream between the two branches
  A *fc, *gelu;                              // [N,F]
  A *attn_kept, *mlp_kept;  // [N,C] each branch's D(F) before its scale or gate (else null)
  A *attn_gate, *mlp_gate;  // [N,C] highway's gates (else null)
  A *in1, *in2;             // [N,C] see above
  static Sizes size(const BlockShape& s);
  static BlockActivations carve(Carver<Backend>& memory, const BlockShape& s);
};

// Buffers shared by every block, used only within one block's forward or backward.
template <class Backend>
struct BlockScratch {
  typename Backend::Act* branch;  // [N,C]   a branch's output / the gradient of one
  typename Backend::Act* dnc;     // [N,C]   gradient of the attention output, then of a LayerNorm output
  typename Backend::Act* dqkv;    // [N,3C]  (also the highway gate's dL/dz and its input gradient)
  typename Backend::Act* attn_scratch;  // Backend::attention_scratch_elems (CUDA: dS [B,NH,T,T]; CPU: none)
  typename Backend::Act* dff;     // [N,F]
  typename Backend::Acc* stream;  // [N,C]   an Acc temporary: post-norm's LayerNorm input gradient,
                                  //         the layerscale/rezero scale sums
  static Sizes size(const BlockShape& s);
  static BlockScratch carve(Carver<Backend>& memory, const BlockShape& s);
};

// The gradients of each parametrised op's output in a block's backward pass. The full backward
// pass keeps them in scratch (in_scratch); the zero-bubble schedule runs the input half first,
// which leaves them in memory of their own (carve), and the weight half later reads them there.
template <class Backend>
struct BlockOutputGrads {
  using A = typename Backend::Act;
  A* mlp_proj;   // [N,C]
  A* mlp_fc;     // [N,F] (after GELU's backward: the gradient of the fc output)
  A* ln2;        // [N,C]
  A* attn_proj;  // [N,C]
  A* attn_qkv;   // [N,3C]
  A* ln1;        // [N,C]
  static Sizes size(const BlockShape& s);
  static BlockOutputGrads carve(Carver<Backend>& memory, const BlockShape& s);
  static BlockOutputGrads in_scratch(const BlockScratch<Backend>& scratch);
};

// Which part of a block's backward pass to run: all of it, the input gradient only (dres, and the
// output gradients left in BlockOutputGrads), or the parameter gradients only (from those). The
// parts exist for pre-norm blocks only (config refuses zb1 with another variant).
enum class BackwardPart { kAll, kInput, kWeight };

// Dropout sites: 0 is the embedding's, 1 + 2 layer block `layer`'s attention branch, 2 + 2 layer
// its MLP branch; drop-path draws once per (sample, block) at its own site, shared by the block's
// two branches. Host-device: every backend numbers the masks alike.
inline constexpr uint32_t kEmbeddingDropoutSite = 0;
KL_HOST_DEVICE constexpr uint32_t attention_dropout_site(int layer) { return 1 + 2 * static_cast<uint32_t>(layer); }
KL_HOST_DEVICE constexpr uint32_t mlp_dropout_site(int layer) { return 2 + 2 * static_cast<uint32_t>(layer); }
KL_HOST_DEVICE constexpr uint32_t drop_path_site(int layer) { return 0x80000000u | static_cast<uint32_t>(layer); }

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
// outputs D(F), for diagnostics. Definitions in models/block_impl.h, instantiated per backend.
template <class Backend>
void block_forward(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                   const typename Backend::Acc* x_in, typename Backend::Acc* x_out, const BlockActivations<Backend>& a,
                   const BlockScratch<Backend>& scratch, const BlockDropout& dropout, double* branch_sq = nullptr);

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
template <class Backend>
void block_backward(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                    const BlockTensors<typename Backend::Acc*>& grad, const typename Backend::Acc* x_in,
                    const BlockActivations<Backend>& a, const BlockScratch<Backend>& scratch,
                    const BlockDropout& dropout, typename Backend::Acc* dres, BackwardPart part,
                    const BlockOutputGrads<Backend>& d);

}  // namespace kl
