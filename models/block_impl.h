// Forward and backward of one block, for every residual variant (models/residual.h) and every
// backend (models/backend.h). Included where a backend is instantiated: models/block.cpp (CPU) and
// src/cuda/instantiate.cpp (CUDA).
//
// Accumulation rule: parameter gradients accumulate (+=) across micro-batches; activation gradients
// are assigned (=); the residual stream's gradient `dres` accumulates, because both the identity
// path and the branch write into it.
//
// Each branch (attention, then MLP) is one pattern: u -> [LN] -> F -> dropout, drop-path -> joined
// with u into v. Its forward and backward below take the branch's F as a small function, so the
// joining code is written once for both branches.
#pragma once

#include <type_traits>
#include <vector>

#include "models/block.h"
#include "src/util/error.h"

namespace kl {
namespace block_detail {

// One branch's tensors and saved activations, resolved from the block's.
template <class Backend>
struct BranchRefs {
  using A = typename Backend::Act;
  using S = typename Backend::Acc;
  const A *ln_w, *ln_b, *scale, *gate_w, *gate_b;
  S *ln_w_grad, *ln_b_grad, *scale_grad, *gate_w_grad, *gate_b_grad;
  A* ln;           // LN(u), pre-norm variants
  S* sum;          // the sum before the LN, post-norm variants
  S *ln_mean, *ln_rstd;
  A *kept, *gate;
  A* in;           // u as Act (null: read u itself)
  int scale_size;  // 1 (rezero) or C (layerscale)
  uint32_t site;
};

enum class Which { kAttention, kMlp };

template <class Backend>
BranchRefs<Backend> branch_refs(Which which, const BlockShape& s, const BlockTensors<const typename Backend::Act*>& w,
                                const BlockTensors<typename Backend::Acc*>& g, const BlockActivations<Backend>& a,
                                int layer) {
  const int scale_size = s.residual == Residual::kReZero ? 1 : s.C;
  if (which == Which::kAttention) {
    return {w.ln1_w, w.ln1_b, w.attn_scale, w.attn_gate_w, w.attn_gate_b,
            g.ln1_w, g.ln1_b, g.attn_scale, g.attn_gate_w, g.attn_gate_b,
            a.ln1,   a.sum1,  a.ln1_mean,   a.ln1_rstd,    a.attn_kept,
            a.attn_gate, a.in1, scale_size, attention_dropout_site(layer)};
  }
  return {w.ln2_w, w.ln2_b, w.mlp_scale, w.mlp_gate_w, w.mlp_gate_b,
          g.ln2_w, g.ln2_b, g.mlp_scale, g.mlp_gate_w, g.mlp_gate_b,
          a.ln2,   a.sum2,  a.ln2_mean,  a.ln2_rstd,   a.mlp_kept,
          a.mlp_gate, a.in2, scale_size, mlp_dropout_site(layer)};
}

// Whether a branch reads its input u as a product's input (F without a LayerNorm, or highway's
// gate): then u is needed as Act.
inline bool reads_input(Residual r) { return !pre_norm(r) || r == Residual::kHighway; }

// u as a product's input: where it is when Act is Acc, else the copy the forward pass saved.
template <class Backend>
const typename Backend::Act* input_as_act(const BranchRefs<Backend>& b, const typename Backend::Acc* u) {
  if constexpr (std::is_same_v<typename Backend::Act, typename Backend::Acc>) {
    return u;
  } else {
    return b.in;
  }
}

// v = join(u, D(F(u or LN(u)))); `f(input)` leaves F(input) in scratch.branch.
template <class Backend, class F>
void branch_forward(Backend& be, const BlockShape& s, const BranchRefs<Backend>& b, const typename Backend::Acc* u,
                    typename Backend::Acc* v, const BlockScratch<Backend>& scratch, const BlockDropout& dropout,
                    int layer, double* branch_sq, F&& f) {
  using A = typename Backend::Act;
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C, row = int64_t{s.T} * s.C;
  const Residual r = s.residual;
  A* branch = scratch.branch;
  const A* u_act = reads_input(r) ? be.as_act(u, b.in, NC) : nullptr;
  if (pre_norm(r)) be.layernorm_forward(b.ln, b.ln_mean, b.ln_rstd, u, b.ln_w, b.ln_b, N, s.C);
  f(pre_norm(r) ? static_cast<const A*>(b.ln) : u_act);
  be.dropout(branch, static_cast<const A*>(branch), s.B, row, dropout.p, dropout.at(b.site));
  be.drop_path(branch, s.B, row, dropout.path_drop(layer), dropout.at(drop_path_site(layer)), s.branch_scale);
  if (branch_sq) *branch_sq += be.sum_squares(static_cast<const A*>(branch), NC);
  switch (r) {
    case Residual::kPreNorm: be.add_scaled(v, 1.0, u, branch, NC); break;
    case Residual::kPlain: be.convert(v, static_cast<const A*>(branch), NC); break;
    case Residual::kReZero:
    case Residual::kLayerScale:
      be.copy(b.kept, static_cast<const A*>(branch), NC);
      be.scaled_join(v, u, b.scale, b.scale_size, branch, NC, s.C);
      break;
    case Residual::kHighway:
      be.copy(b.kept, static_cast<const A*>(branch), NC);
      be.linear_forward(b.gate, u_act, b.gate_w, b.gate_b, N, s.C, s.C);
      be.highway_join(b.gate, v, branch, u, NC);
      break;
    case Residual::kPostNorm:
    case Residual::kDeepNorm:
      be.add_scaled(b.sum, s.alpha, u, branch, NC);
      be.layernorm_forward(v, b.ln_mean, b.ln_rstd, static_cast<const typename Backend::Acc*>(b.sum), b.ln_w,
                           b.ln_b, N, s.C);
      break;
  }
}

// dres holds dL/dv on entry and dL/du on return. `dbranch` receives dL/d(F's output) (after the
// masks' backward); `f()` then runs F's backward from it and returns where it left dL/d(F's
// input).
template <class Backend, class F>
void branch_backward(Backend& be, const BlockShape& s, const BranchRefs<Backend>& b, const typename Backend::Acc* u,
                     typename Backend::Acc* dres, typename Backend::Act* dbranch,
                     const BlockScratch<Backend>& scratch, const BlockDropout& dropout, int layer,
                     BackwardPart part, F&& f) {
  using A = typename Backend::Act;
  using S = typename Backend::Acc;
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C, row = int64_t{s.T} * s.C;
  const Residual r = s.residual;
  const bool inputs = part != BackwardPart::kWeight, weights = part != BackwardPart::kInput;
  if (inputs) {
    // Both masks are diagonal: their backward is the same masking, in any order, from wherever
    // dL/d(the branch's D(F)) is.
    auto unmask = [&](const auto* from) {
      be.dropout(dbranch, from, s.B, row, dropout.p, dropout.at(b.site));
      be.drop_path(dbranch, s.B, row, dropout.path_drop(layer), dropout.at(drop_path_site(layer)), s.branch_scale);
    };
    switch (r) {
      case Residual::kPreNorm: unmask(static_cast<const S*>(dres)); break;
      case Residual::kPlain:
        unmask(static_cast<const S*>(dres));
        be.zero(dres, NC);  // no identity path
        break;
      case Residual::kReZero:
      case Residual::kLayerScale:
        // d scale = sum over tokens of dv * kept (per channel, or over everything for one scalar).
        be.scale_grad(b.scale_grad, b.scale_size, dres, b.kept, N, s.C, scratch.stream);
        be.scale_by(dbranch, b.scale, b.scale_size, dres, NC, s.C);
        unmask(static_cast<const A*>(dbranch));
        break;
      case Residual::kHighway: {
        // v = g kept + (1 - g) u, g = sigmoid(z), z = u W^T + b: dz into dqkv, its input gradient after it.
        A* dz = scratch.dqkv;
        A* dz_input = scratch.dqkv + NC;
        be.highway_join_backward(dbranch, dz, dres, b.gate, b.kept, u, NC);
        be.linear_backward(dz_input, b.gate_w_grad, b.gate_b_grad, dz, input_as_act(b, u), b.gate_w, N, s.C, s.C);
        be.add_scaled(dres, 1.0, dres, dz_input, NC);
        unmask(static_cast<const A*>(dbranch));
        break;
      }
      case Residual::kPostNorm:
      case Residual::kDeepNorm:
        be.zero(scratch.stream, NC);
        be.layernorm_backward(scratch.stream, b.ln_w_grad, b.ln_b_grad, static_cast<const S*>(dres), b.sum, b.ln_w,
                              b.ln_mean, b.ln_rstd, N, s.C);
        be.copy(dres, static_cast<const S*>(scratch.stream), NC);
        be.scale(dres, NC, s.alpha);
        unmask(static_cast<const S*>(scratch.stream));
        break;
    }
  }
  const A* dfin = f();
  if (pre_norm(r)) {
    be.layernorm_backward(inputs ? dres : nullptr, weights ? b.ln_w_grad : nullptr, weights ? b.ln_b_grad : nullptr,
                          dfin, u, b.ln_w, b.ln_mean, b.ln_rstd, N, s.C);
  } else if (inputs) {
    be.add_scaled(dres, 1.0, dres, dfin, NC);
  }
}

}  // namespace block_detail

template <class Backend>
Sizes BlockActivations<Backend>::size(const BlockShape& s) {
  const int64_t N = s.tokens(), NC = N * s.C, stash = Backend::attention_stash_elems(s.B, s.T, s.NH);
  const Residual r = s.residual;
  Sizes z;
  z.act = (pre_norm(r) ? 2 * NC : 0) + 3 * NC + stash + NC + 2 * N * s.F +
          (scaled_branch(r) || r == Residual::kHighway ? 2 * NC : 0) + (r == Residual::kHighway ? 2 * NC : 0);
  if constexpr (!std::is_same_v<A, S>) z.act += block_detail::reads_input(r) ? 2 * NC : 0;
  z.acc = (post_norm(r) ? 2 * NC : 0) + 4 * N + NC;
  return z;
}

template <class Backend>
BlockActivations<Backend> BlockActivations<Backend>::carve(Carver<Backend>& m, const BlockShape& s) {
  const int64_t N = s.tokens(), C = s.C, NC = N * C;
  const Residual r = s.residual;
  BlockActivations a{};
  if (pre_norm(r)) {
    a.ln1 = m.take_act(NC);
    a.ln2 = m.take_act(NC);
  }
  if (post_norm(r)) {
    a.sum1 = m.take_acc(NC);
    a.sum2 = m.take_acc(NC);
  }
  a.ln1_mean = m.take_acc(N);
  a.ln1_rstd = m.take_acc(N);
  a.ln2_mean = m.take_acc(N);
  a.ln2_rstd = m.take_acc(N);
  a.qkv = m.take_act(3 * NC);
  a.attn_stash = m.take_act(Backend::attention_stash_elems(s.B, s.T, s.NH));
  a.att = m.take_act(NC);
  a.x_mid = m.take_acc(NC);
  a.fc = m.take_act(N * s.F);
  a.gelu = m.take_act(N * s.F);
  if (scaled_branch(r) || r == Residual::kHighway) {
    a.attn_kept = m.take_act(NC);
    a.mlp_kept = m.take_act(NC);
  }
  if (r == Residual::kHighway) {
    a.attn_gate = m.take_act(NC);
    a.mlp_gate = m.take_act(NC);
  }
  if constexpr (!std::is_same_v<A, S>) {
    if (block_detail::reads_input(r)) {
      a.in1 = m.take_act(NC);
      a.in2 = m.take_act(NC);
    }
  }
  return a;
}

template <class Backend>
Sizes BlockScratch<Backend>::size(const BlockShape& s) {
  const int64_t N = s.tokens();
  return {N * s.C * 2 + N * 3 * s.C + Backend::attention_scratch_elems(s.B, s.T, s.NH) + N * s.F, N * s.C};
}

template <class Backend>
BlockScratch<Backend> BlockScratch<Backend>::carve(Carver<Backend>& m, const BlockShape& s) {
  const int64_t N = s.tokens();
  BlockScratch b{};
  b.branch = m.take_act(N * s.C);
  b.dnc = m.take_act(N * s.C);
  b.dqkv = m.take_act(N * 3 * s.C);
  b.attn_scratch = m.take_act(Backend::attention_scratch_elems(s.B, s.T, s.NH));
  b.dff = m.take_act(N * s.F);
  b.stream = m.take_acc(N * s.C);
  return b;
}

template <class Backend>
Sizes BlockOutputGrads<Backend>::size(const BlockShape& s) {
  return {s.tokens() * (7 * int64_t{s.C} + s.F), 0};
}

template <class Backend>
BlockOutputGrads<Backend> BlockOutputGrads<Backend>::carve(Carver<Backend>& m, const BlockShape& s) {
  const int64_t N = s.tokens();
  BlockOutputGrads d{};
  d.mlp_proj = m.take_act(N * s.C);
  d.mlp_fc = m.take_act(N * s.F);
  d.ln2 = m.take_act(N * s.C);
  d.attn_proj = m.take_act(N * s.C);
  d.attn_qkv = m.take_act(N * 3 * s.C);
  d.ln1 = m.take_act(N * s.C);
  return d;
}

template <class Backend>
BlockOutputGrads<Backend> BlockOutputGrads<Backend>::in_scratch(const BlockScratch<Backend>& b) {
  // Each is consumed before the next one reuses its scratch.
  return {b.branch, b.dff, b.dnc, b.branch, b.dqkv, b.dnc};
}

namespace block_detail {

// The block over all B samples of its shape, every branch computed (a dropped one zeroed by its
// drop-path mask).
template <class Backend>
void forward_all(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                 const typename Backend::Acc* x_in, typename Backend::Acc* x_out, const BlockActivations<Backend>& a,
                 const BlockScratch<Backend>& scratch, const BlockDropout& dropout, double* branch_sq) {
  using A = typename Backend::Act;
  const int N = static_cast<int>(s.tokens());
  const BlockTensors<typename Backend::Acc*> no_grads{};
  branch_forward(be, s, branch_refs<Backend>(Which::kAttention, s, w, no_grads, a, layer), x_in, a.x_mid, scratch,
                 dropout, layer, branch_sq, [&](const A* in) {
                   be.linear_forward(a.qkv, in, w.qkv_w, w.qkv_b, N, s.C, 3 * s.C);
                   be.attention_forward(a.att, a.attn_stash, a.qkv, s.B, s.T, s.C, s.NH);
                   be.linear_forward(scratch.branch, a.att, w.proj_w, w.proj_b, N, s.C, s.C);
                 });
  branch_forward(be, s, branch_refs<Backend>(Which::kMlp, s, w, no_grads, a, layer),
                 static_cast<const typename Backend::Acc*>(a.x_mid), x_out, scratch, dropout, layer,
                 branch_sq ? branch_sq + 1 : nullptr, [&](const A* in) {
                   be.linear_gelu_forward(a.fc, a.gelu, in, w.fc_w, w.fc_b, N, s.C, s.F);
                   be.linear_forward(scratch.branch, a.gelu, w.fc2_w, w.fc2_b, N, s.F, s.C);
                 });
}

template <class Backend>
void backward_all(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                  const BlockTensors<typename Backend::Acc*>& g, const typename Backend::Acc* x_in,
                  const BlockActivations<Backend>& a, const BlockScratch<Backend>& scratch,
                  const BlockDropout& dropout, typename Backend::Acc* dres, BackwardPart part,
                  const BlockOutputGrads<Backend>& d) {
  using A = typename Backend::Act;
  using S = typename Backend::Acc;
  KL_CHECK(part == BackwardPart::kAll || s.residual == Residual::kPreNorm,
           "the split backward pass exists for pre-norm blocks only");
  const int N = static_cast<int>(s.tokens());
  const bool inputs = part != BackwardPart::kWeight;
  const bool weights = part != BackwardPart::kInput;
  auto input_grad = [inputs](A* p) { return inputs ? p : nullptr; };
  auto weight_grad = [weights](S* p) { return weights ? p : nullptr; };
  const bool pre = pre_norm(s.residual);
  // MLP branch: dres = dL/dx_out; afterwards dres = dL/dx_mid.
  const BranchRefs<Backend> mlp = branch_refs<Backend>(Which::kMlp, s, w, g, a, layer);
  const S* x_mid = a.x_mid;
  branch_backward(be, s, mlp, x_mid, dres, d.mlp_proj, scratch, dropout, layer, part, [&] {
    be.linear_backward(input_grad(d.mlp_fc), weight_grad(g.fc2_w), weight_grad(g.fc2_b), d.mlp_proj, a.gelu, w.fc2_w,
                       N, s.F, s.C);
    // The fc bias's gradient is summed in GELU's backward pass when that runs here; the weight
    // half of a split pass (no GELU) sums it from the dL/dfc the input half left.
    if (inputs) be.gelu_backward_bias(d.mlp_fc, weight_grad(g.fc_b), a.fc, d.mlp_fc, N, s.F);
    be.linear_backward(input_grad(d.ln2), weight_grad(g.fc_w), inputs ? nullptr : weight_grad(g.fc_b), d.mlp_fc,
                       pre ? static_cast<const A*>(a.ln2) : input_as_act(mlp, x_mid), w.fc_w, N, s.C, s.F);
    return static_cast<const A*>(d.ln2);
  });
  // Attention branch: afterwards dres = dL/dx_in. The attention output's gradient has no weight to
  // feed, so it stays in scratch.
  const BranchRefs<Backend> attn = branch_refs<Backend>(Which::kAttention, s, w, g, a, layer);
  branch_backward(be, s, attn, x_in, dres, d.attn_proj, scratch, dropout, layer, part, [&] {
    be.linear_backward(input_grad(scratch.dnc), weight_grad(g.proj_w), weight_grad(g.proj_b), d.attn_proj, a.att,
                       w.proj_w, N, s.C, s.C);
    if (inputs) {
      be.attention_backward(d.attn_qkv, scratch.attn_scratch, scratch.dnc, a.qkv, a.att, a.attn_stash, s.B, s.T, s.C,
                            s.NH);
    }
    be.linear_backward(input_grad(d.ln1), weight_grad(g.qkv_w), weight_grad(g.qkv_b), d.attn_qkv,
                       pre ? static_cast<const A*>(a.ln1) : input_as_act(attn, x_in), w.qkv_w, N, s.C, 3 * s.C);
    return static_cast<const A*>(d.ln1);
  });
}

// Stochastic depth that saves compute. Where a dropped block is the identity
// (dropped_block_is_identity), the block runs only on the runs of consecutive samples it keeps,
// each as a smaller batch whose tensors start at the run's first sample; a dropped sample's stream
// passes through (x_out = x_in, dL/dx_in = dL/dx_out) with no work. The masks are keyed by global
// sample, so a run draws what the whole batch would have drawn for those samples.
struct Run {
  int begin, end;  // samples [begin, end)
};
inline std::vector<Run> kept_runs(const BlockDropout& dropout, int layer, int B) {
  const double p = dropout.path_drop(layer);
  const cpu::DropoutKey key = dropout.at(drop_path_site(layer));
  std::vector<Run> runs;
  for (int b = 0; b < B; ++b) {
    if (!rng::drop_path_keeps(rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site), p)) continue;
    if (!runs.empty() && runs.back().end == b) {
      runs.back().end = b + 1;
    } else {
      runs.push_back({b, b + 1});
    }
  }
  return runs;
}
inline bool skips_dropped(const BlockShape& s, const BlockDropout& dropout, int layer) {
  return dropout.path_drop(layer) > 0.0 && dropped_block_is_identity(s.residual);
}

template <class P>
P shifted(P p, int64_t n) {
  return p ? p + n : p;
}

// The run's view: the same memory from sample b0 on, for `count` samples.
struct RunView {
  int b0, count;
  BlockShape shape(const BlockShape& s) const {
    BlockShape r = s;
    r.B = count;
    return r;
  }
  int64_t rows(const BlockShape& s, int64_t per_token) const { return int64_t{b0} * s.T * per_token; }
  template <class Backend>
  BlockActivations<Backend> activations(const BlockActivations<Backend>& a, const BlockShape& s) const {
    const int64_t c = rows(s, s.C), t = rows(s, 1);
    BlockActivations<Backend> r = a;
    for (auto* p : {&r.ln1, &r.ln2, &r.att, &r.attn_kept, &r.mlp_kept, &r.attn_gate, &r.mlp_gate, &r.in1, &r.in2}) {
      *p = shifted(*p, c);
    }
    for (auto* p : {&r.sum1, &r.sum2, &r.x_mid}) *p = shifted(*p, c);
    for (auto* p : {&r.ln1_mean, &r.ln1_rstd, &r.ln2_mean, &r.ln2_rstd}) *p = shifted(*p, t);
    r.qkv = shifted(a.qkv, 3 * c);
    r.attn_stash = shifted(a.attn_stash, Backend::attention_stash_elems(b0, s.T, s.NH));
    r.fc = shifted(a.fc, rows(s, s.F));
    r.gelu = shifted(a.gelu, rows(s, s.F));
    return r;
  }
  template <class Backend>
  BlockOutputGrads<Backend> output_grads(const BlockOutputGrads<Backend>& d, const BlockShape& s) const {
    const int64_t c = rows(s, s.C);
    return {shifted(d.mlp_proj, c), shifted(d.mlp_fc, rows(s, s.F)), shifted(d.ln2, c),
            shifted(d.attn_proj, c), shifted(d.attn_qkv, 3 * c), shifted(d.ln1, c)};
  }
  BlockDropout dropout(const BlockDropout& d) const {
    BlockDropout r = d;
    r.key.first_sample += b0;
    return r;
  }
};

}  // namespace block_detail

template <class Backend>
void block_forward(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                   const typename Backend::Acc* x_in, typename Backend::Acc* x_out, const BlockActivations<Backend>& a,
                   const BlockScratch<Backend>& scratch, const BlockDropout& dropout, double* branch_sq) {
  using namespace block_detail;
  if (!skips_dropped(s, dropout, layer)) {
    forward_all(be, s, layer, w, x_in, x_out, a, scratch, dropout, branch_sq);
    return;
  }
  const int64_t row = int64_t{s.T} * s.C;
  be.copy(x_out, x_in, s.B * row);  // the dropped samples' identity; the kept ones are overwritten
  for (const Run& run : kept_runs(dropout, layer, s.B)) {
    const RunView v{run.begin, run.end - run.begin};
    forward_all(be, v.shape(s), layer, w, x_in + v.rows(s, s.C), x_out + v.rows(s, s.C), v.activations(a, s),
                scratch, v.dropout(dropout), branch_sq);
  }
}

template <class Backend>
void block_backward(Backend& be, const BlockShape& s, int layer, const BlockTensors<const typename Backend::Act*>& w,
                    const BlockTensors<typename Backend::Acc*>& g, const typename Backend::Acc* x_in,
                    const BlockActivations<Backend>& a, const BlockScratch<Backend>& scratch,
                    const BlockDropout& dropout, typename Backend::Acc* dres, BackwardPart part,
                    const BlockOutputGrads<Backend>& d) {
  using namespace block_detail;
  if (!skips_dropped(s, dropout, layer)) {
    backward_all(be, s, layer, w, g, x_in, a, scratch, dropout, dres, part, d);
    return;
  }
  // A dropped sample's dres passes through untouched. The full backward pass keeps its output
  // gradients in scratch (BlockOutputGrads::in_scratch), used from its start by every run; the
  // split one's live in memory of their own, one stretch per sample like the activations.
  for (const Run& run : kept_runs(dropout, layer, s.B)) {
    const RunView v{run.begin, run.end - run.begin};
    backward_all(be, v.shape(s), layer, w, g, x_in + v.rows(s, s.C), v.activations(a, s), scratch,
                 v.dropout(dropout), dres + v.rows(s, s.C), part,
                 part == BackwardPart::kAll ? d : v.output_grads(d, s));
  }
}

// Explicit instantiations for one backend (in a .cpp that includes this file).
#define KL_INSTANTIATE_BLOCK(Backend)                                                                           \
  template struct BlockActivations<Backend>;                                                                   \
  template struct BlockScratch<Backend>;                                                                       \
  template struct BlockOutputGrads<Backend>;                                                                   \
  template void block_forward<Backend>(Backend&, const BlockShape&, int,                                       \
                                       const BlockTensors<const Backend::Act*>&, const Backend::Acc*,          \
                                       Backend::Acc*, const BlockActivations<Backend>&,                        \
                                       const BlockScratch<Backend>&, const BlockDropout&, double*);           \
  template void block_backward<Backend>(Backend&, const BlockShape&, int,                                      \
                                        const BlockTensors<const Backend::Act*>&,                              \
                                        const BlockTensors<Backend::Acc*>&, const Backend::Acc*,               \
                                        const BlockActivations<Backend>&, const BlockScratch<Backend>&,        \
                                        const BlockDropout&, Backend::Acc*, BackwardPart,                      \
                                        const BlockOutputGrads<Backend>&);

}  // namespace kl
