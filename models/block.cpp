// Forward and backward of one block, for every residual variant (models/residual.h).
//
// Accumulation rule: parameter gradients accumulate (+=) across micro-batches; activation gradients
// are assigned (=); the residual stream's gradient `dres` accumulates, because both the identity
// path and the branch write into it.
//
// Each branch (attention, then MLP) is one pattern: u -> [LN] -> F -> dropout, drop-path -> joined
// with u into v. Its forward and backward below take the branch's F as a small function, so the
// joining code is written once for both branches.
#include "models/block.h"

#include <algorithm>
#include <cmath>

#include "src/kernels/cpu/parallel.h"
#include "src/util/error.h"

namespace kl {
namespace {

uint32_t attn_site(int layer) { return 1 + 2 * static_cast<uint32_t>(layer); }
uint32_t mlp_site(int layer) { return 2 + 2 * static_cast<uint32_t>(layer); }
// Drop-path draws once per (sample, block), shared by the block's two branches.
uint32_t path_site(int layer) { return 0x80000000u | static_cast<uint32_t>(layer); }

template <class T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// One branch's tensors and saved activations, resolved from the block's.
template <class T>
struct BranchRefs {
  const T *ln_w, *ln_b, *scale, *gate_w, *gate_b;
  T *ln_w_grad, *ln_b_grad, *scale_grad, *gate_w_grad, *gate_b_grad;
  T *ln, *ln_mean, *ln_rstd;  // LN(u) (pre-norm) or the sum before the LN (post-norm)
  T *kept, *gate;
  int64_t scale_size;         // 1 (rezero) or C (layerscale)
  uint32_t site;
};

enum class Which { kAttention, kMlp };

template <class T>
BranchRefs<T> branch_refs(Which which, const BlockShape& s, const BlockTensors<const T*>& w, const BlockTensors<T*>& g,
                          const BlockActivations<T>& a, int layer) {
  const int64_t scale_size = s.residual == Residual::kReZero ? 1 : s.C;
  if (which == Which::kAttention) {
    return {w.ln1_w, w.ln1_b, w.attn_scale, w.attn_gate_w, w.attn_gate_b,
            g.ln1_w, g.ln1_b, g.attn_scale, g.attn_gate_w, g.attn_gate_b,
            a.ln1,   a.ln1_mean, a.ln1_rstd, a.attn_kept, a.attn_gate, scale_size, attn_site(layer)};
  }
  return {w.ln2_w, w.ln2_b, w.mlp_scale, w.mlp_gate_w, w.mlp_gate_b,
          g.ln2_w, g.ln2_b, g.mlp_scale, g.mlp_gate_w, g.mlp_gate_b,
          a.ln2,   a.ln2_mean, a.ln2_rstd, a.mlp_kept, a.mlp_gate, scale_size, mlp_site(layer)};
}

// v = join(u, D(F(u or LN(u)))); `f(input)` leaves F(input) in scratch.branch.
template <class T, class F>
void branch_forward(const BlockShape& s, const BranchRefs<T>& b, const T* u, T* v, const BlockScratch<T>& scratch,
                    const BlockDropout& dropout, int layer, double* branch_sq, F&& f) {
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C, row = int64_t{s.T} * s.C;
  const Residual r = s.residual;
  T* branch = scratch.branch;
  if (pre_norm(r)) cpu::layernorm_forward(b.ln, b.ln_mean, b.ln_rstd, u, b.ln_w, b.ln_b, N, s.C);
  f(pre_norm(r) ? static_cast<const T*>(b.ln) : u);
  cpu::dropout_forward(branch, branch, s.B, row, dropout.p, dropout.at(b.site));
  cpu::drop_path(branch, s.B, row, dropout.path_drop(layer), dropout.at(path_site(layer)));
  if (branch_sq) *branch_sq += cpu::sum_squares(static_cast<const T*>(branch), NC);
  switch (r) {
    case Residual::kPreNorm: add(v, u, branch, NC); break;
    case Residual::kPlain: std::copy(branch, branch + NC, v); break;
    case Residual::kReZero:
    case Residual::kLayerScale:
      std::copy(branch, branch + NC, b.kept);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < NC; ++i) v[i] = u[i] + b.scale[b.scale_size == 1 ? 0 : i % s.C] * branch[i];
      break;
    case Residual::kHighway:
      std::copy(branch, branch + NC, b.kept);
      cpu::linear_forward(b.gate, u, b.gate_w, b.gate_b, N, s.C, s.C);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < NC; ++i) {
        const T g = T(1) / (T(1) + std::exp(-b.gate[i]));
        b.gate[i] = g;
        v[i] = g * branch[i] + (T(1) - g) * u[i];
      }
      break;
    case Residual::kPostNorm:
    case Residual::kDeepNorm:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < NC; ++i) b.ln[i] = T(s.alpha) * u[i] + branch[i];
      cpu::layernorm_forward(v, b.ln_mean, b.ln_rstd, b.ln, b.ln_w, b.ln_b, N, s.C);
      break;
  }
}

// dres holds dL/dv on entry and dL/du on return. `dbranch` receives dL/d(F's output) (after the
// masks' backward); `f()` then runs F's backward from it and returns where it left dL/d(F's
// input). `temp`: scratch of 2 N C (zeroed in its first C by the caller for a scaled branch).
template <class T, class F>
void branch_backward(const BlockShape& s, const BranchRefs<T>& b, const T* u, T* dres, T* dbranch, T* temp,
                     const BlockDropout& dropout, int layer, BackwardPart part, F&& f) {
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C, row = int64_t{s.T} * s.C;
  const Residual r = s.residual;
  const bool inputs = part != BackwardPart::kWeight, weights = part != BackwardPart::kInput;
  if (inputs) {
    const T* from = dbranch;  // where dL/d(the branch's D(F)) is, before the masks' backward
    switch (r) {
      case Residual::kPreNorm: from = dres; break;
      case Residual::kPlain: from = dres; break;  // dres is cleared after the masks read it
      case Residual::kReZero:
      case Residual::kLayerScale:
        // d scale = sum over tokens of dv * kept (per channel, or over everything for one scalar).
#pragma omp parallel
        {
          const cpu::Range cols = cpu::share(s.C, omp_get_thread_num(), omp_get_num_threads());
          for (int n = 0; n < N; ++n) {
            const int64_t at = int64_t{n} * s.C;
            for (int64_t c = cols.begin; c < cols.end; ++c) temp[c] += dres[at + c] * b.kept[at + c];
          }
        }
        for (int64_t c = 0; c < s.C; ++c) b.scale_grad[b.scale_size == 1 ? 0 : c] += temp[c];
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < NC; ++i) dbranch[i] = b.scale[b.scale_size == 1 ? 0 : i % s.C] * dres[i];
        break;
      case Residual::kHighway:
        // v = g kept + (1 - g) u, g = sigmoid(z), z = u W^T + b.
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < NC; ++i) {
          const T g = b.gate[i], dv = dres[i];
          dbranch[i] = g * dv;
          temp[i] = (b.kept[i] - u[i]) * dv * g * (T(1) - g);  // dL/dz
          dres[i] = (T(1) - g) * dv;
        }
        cpu::linear_backward(temp + NC, b.gate_w_grad, b.gate_b_grad, temp, u, b.gate_w, N, s.C, s.C);
        add(dres, dres, temp + NC, NC);
        break;
      case Residual::kPostNorm:
      case Residual::kDeepNorm:
        std::fill(dbranch, dbranch + NC, T(0));
        cpu::layernorm_backward(dbranch, b.ln_w_grad, b.ln_b_grad, dres, b.ln, b.ln_w, b.ln_mean, b.ln_rstd, N, s.C);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < NC; ++i) dres[i] = T(s.alpha) * dbranch[i];
        break;
    }
    // Both masks are diagonal: their backward is the same masking, in any order.
    cpu::dropout_backward(dbranch, from, s.B, row, dropout.p, dropout.at(b.site));
    cpu::drop_path(dbranch, s.B, row, dropout.path_drop(layer), dropout.at(path_site(layer)));
    if (r == Residual::kPlain) std::fill(dres, dres + NC, T(0));  // no identity path
  }
  T* dfin = f();
  if (pre_norm(r)) {
    cpu::layernorm_backward(inputs ? dres : nullptr, weights ? b.ln_w_grad : nullptr, weights ? b.ln_b_grad : nullptr,
                            dfin, u, b.ln_w, b.ln_mean, b.ln_rstd, N, s.C);
  } else if (inputs) {
    add(dres, dres, static_cast<const T*>(dfin), NC);
  }
}

}  // namespace

void StreamStats::reset(int layers) {
  for (auto* v : {&grad_sq, &act_sq, &attn_sq, &mlp_sq}) v->assign(static_cast<size_t>(layers), 0.0);
  final_grad_sq = final_act_sq = 0.0;
}

BlockShape block_shape(const ModelConfig& m, int B) {
  BlockShape s{B, m.seq_len, m.d_model, m.heads, m.ff_width()};
  s.residual = parse_residual(m.residual);
  if (s.residual == Residual::kDeepNorm) s.alpha = deepnorm_alpha(m.layers);
  return s;
}

BlockDropout BlockDropout::make(const ModelConfig& m, uint64_t seed, int64_t step, int64_t first_sample,
                                bool training) {
  BlockDropout d;
  d.p = training ? m.dropout : 0.0;
  d.key = {seed, step, first_sample, 0};
  d.path_last = training ? m.stochastic_depth : 0.0;
  d.layers = m.layers;
  return d;
}

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

template <class T>
int64_t BlockActivations<T>::size(const BlockShape& s) {
  const int64_t N = s.tokens();
  const int64_t extra = (scaled_branch(s.residual) ? 2 : s.residual == Residual::kHighway ? 4 : 0) * N * s.C;
  return N * s.C * 4 + N * 4 + N * 3 * s.C + int64_t{s.B} * s.NH * s.T * s.T + N * s.F * 2 + extra;
}

template <class T>
BlockActivations<T> BlockActivations<T>::carve(T* m, const BlockShape& s) {
  const int64_t N = s.tokens(), C = s.C;
  BlockActivations a{};
  auto take = [&m](int64_t n) { T* p = m; m += n; return p; };
  a.ln1 = take(N * C);
  a.ln1_mean = take(N);
  a.ln1_rstd = take(N);
  a.qkv = take(N * 3 * C);
  a.probs = take(int64_t{s.B} * s.NH * s.T * s.T);
  a.att = take(N * C);
  a.x_mid = take(N * C);
  a.ln2 = take(N * C);
  a.ln2_mean = take(N);
  a.ln2_rstd = take(N);
  a.fc = take(N * s.F);
  a.gelu = take(N * s.F);
  if (scaled_branch(s.residual) || s.residual == Residual::kHighway) {
    a.attn_kept = take(N * C);
    a.mlp_kept = take(N * C);
  }
  if (s.residual == Residual::kHighway) {
    a.attn_gate = take(N * C);
    a.mlp_gate = take(N * C);
  }
  return a;
}

template <class T>
int64_t BlockScratch<T>::size(const BlockShape& s) {
  const int64_t N = s.tokens();
  return N * s.C * 2 + N * 3 * s.C + int64_t{s.B} * s.NH * s.T * s.T + N * s.F;
}

template <class T>
BlockScratch<T> BlockScratch<T>::carve(T* m, const BlockShape& s) {
  const int64_t N = s.tokens();
  BlockScratch b{};
  auto take = [&m](int64_t n) { T* p = m; m += n; return p; };
  b.branch = take(N * s.C);
  b.dnc = take(N * s.C);
  b.dqkv = take(N * 3 * s.C);
  b.dprobs = take(int64_t{s.B} * s.NH * s.T * s.T);
  b.dff = take(N * s.F);
  return b;
}

template <class T>
int64_t BlockOutputGrads<T>::size(const BlockShape& s) {
  return s.tokens() * (7 * int64_t{s.C} + s.F);
}

template <class T>
BlockOutputGrads<T> BlockOutputGrads<T>::carve(T* m, const BlockShape& s) {
  const int64_t N = s.tokens();
  auto take = [&m](int64_t n) { T* p = m; m += n; return p; };
  BlockOutputGrads d{};
  d.mlp_proj = take(N * s.C);
  d.mlp_fc = take(N * s.F);
  d.ln2 = take(N * s.C);
  d.attn_proj = take(N * s.C);
  d.attn_qkv = take(N * 3 * s.C);
  d.ln1 = take(N * s.C);
  return d;
}

template <class T>
BlockOutputGrads<T> BlockOutputGrads<T>::in_scratch(const BlockScratch<T>& b) {
  // Each is consumed before the next one reuses its scratch.
  return {b.branch, b.dff, b.dnc, b.branch, b.dqkv, b.dnc};
}

template <class T>
void block_forward(const BlockShape& s, int layer, const BlockTensors<const T*>& w, const T* x_in,
                   T* x_out, const BlockActivations<T>& a, const BlockScratch<T>& scratch,
                   const BlockDropout& dropout, double* branch_sq) {
  const int N = static_cast<int>(s.tokens());
  const BlockTensors<T*> no_grads{};
  branch_forward(s, branch_refs(Which::kAttention, s, w, no_grads, a, layer), x_in, a.x_mid, scratch, dropout, layer,
                 branch_sq, [&](const T* in) {
                   cpu::linear_forward(a.qkv, in, w.qkv_w, w.qkv_b, N, s.C, 3 * s.C);
                   cpu::attention_forward(a.att, a.probs, a.qkv, s.B, s.T, s.C, s.NH);
                   cpu::linear_forward(scratch.branch, a.att, w.proj_w, w.proj_b, N, s.C, s.C);
                 });
  branch_forward(s, branch_refs(Which::kMlp, s, w, no_grads, a, layer), static_cast<const T*>(a.x_mid), x_out, scratch, dropout,
                 layer, branch_sq ? branch_sq + 1 : nullptr, [&](const T* in) {
                   cpu::linear_forward(a.fc, in, w.fc_w, w.fc_b, N, s.C, s.F);
                   cpu::gelu_forward(a.gelu, a.fc, s.tokens() * s.F);
                   cpu::linear_forward(scratch.branch, a.gelu, w.fc2_w, w.fc2_b, N, s.F, s.C);
                 });
}

template <class T>
void block_backward(const BlockShape& s, int layer, const BlockTensors<const T*>& w,
                    const BlockTensors<T*>& g, const T* x_in, const BlockActivations<T>& a,
                    const BlockScratch<T>& scratch, const BlockDropout& dropout, T* dres,
                    BackwardPart part, const BlockOutputGrads<T>& d) {
  KL_CHECK(part == BackwardPart::kAll || s.residual == Residual::kPreNorm,
           "the split backward pass exists for pre-norm blocks only");
  const int N = static_cast<int>(s.tokens());
  const bool inputs = part != BackwardPart::kWeight;
  const bool weights = part != BackwardPart::kInput;
  auto input_grad = [inputs](T* p) { return inputs ? p : nullptr; };
  auto weight_grad = [weights](T* p) { return weights ? p : nullptr; };
  const bool pre = pre_norm(s.residual);
  // Scratch for the joins: the per-channel scale sums (zeroed) or highway's dL/dz and its product.
  // dqkv is free until the attention's backward, which runs after the join.
  T* temp = scratch.dqkv;
  if (scaled_branch(s.residual)) std::fill(temp, temp + s.C, T(0));
  // MLP branch: dres = dL/dx_out; afterwards dres = dL/dx_mid.
  branch_backward(s, branch_refs(Which::kMlp, s, w, g, a, layer), static_cast<const T*>(a.x_mid), dres, d.mlp_proj, temp, dropout,
                  layer, part, [&] {
    cpu::linear_backward(input_grad(d.mlp_fc), weight_grad(g.fc2_w), weight_grad(g.fc2_b), d.mlp_proj, a.gelu,
                         w.fc2_w, N, s.F, s.C);
    if (inputs) cpu::gelu_backward(d.mlp_fc, a.fc, d.mlp_fc, s.tokens() * s.F);
    cpu::linear_backward(input_grad(d.ln2), weight_grad(g.fc_w), weight_grad(g.fc_b), d.mlp_fc,
                         pre ? static_cast<const T*>(a.ln2) : a.x_mid, w.fc_w, N, s.C, s.F);
    return d.ln2;
  });
  // Attention branch: afterwards dres = dL/dx_in. The attention output's gradient has no weight to
  // feed, so it stays in scratch.
  if (scaled_branch(s.residual)) std::fill(temp, temp + s.C, T(0));
  branch_backward(s, branch_refs(Which::kAttention, s, w, g, a, layer), x_in, dres, d.attn_proj, temp, dropout, layer, part, [&] {
    cpu::linear_backward(input_grad(scratch.dnc), weight_grad(g.proj_w), weight_grad(g.proj_b), d.attn_proj, a.att,
                         w.proj_w, N, s.C, s.C);
    if (inputs) {
      cpu::attention_backward(d.attn_qkv, scratch.dprobs, scratch.dnc, a.qkv, a.probs, s.B, s.T, s.C, s.NH);
    }
    cpu::linear_backward(input_grad(d.ln1), weight_grad(g.qkv_w), weight_grad(g.qkv_b), d.attn_qkv,
                         pre ? static_cast<const T*>(a.ln1) : x_in, w.qkv_w, N, s.C, 3 * s.C);
    return d.ln1;
  });
}

#define KL_INSTANTIATE(T)                                                                        \
  template struct BlockActivations<T>;                                                          \
  template struct BlockScratch<T>;                                                              \
  template struct BlockOutputGrads<T>;                                                          \
  template BlockTensors<const T*> block_tensors<const T*>(const ParamTable&, const T*, int);    \
  template BlockTensors<T*> block_tensors<T*>(const ParamTable&, T*, int);                      \
  template void block_forward<T>(const BlockShape&, int, const BlockTensors<const T*>&, const T*, \
                                 T*, const BlockActivations<T>&, const BlockScratch<T>&,         \
                                 const BlockDropout&, double*);                                  \
  template void block_backward<T>(const BlockShape&, int, const BlockTensors<const T*>&,        \
                                  const BlockTensors<T*>&, const T*, const BlockActivations<T>&, \
                                  const BlockScratch<T>&, const BlockDropout&, T*, BackwardPart, \
                                  const BlockOutputGrads<T>&);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl
