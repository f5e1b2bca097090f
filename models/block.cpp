// Forward and backward of one pre-norm block.
//
// Accumulation rule: parameter gradients accumulate (+=) across micro-batches; activation gradients
// are assigned (=); the residual stream's gradient `dres` accumulates, because both the identity
// path and the branch write into it.
#include "models/block.h"

namespace kl {
namespace {

uint32_t attn_site(int layer) { return 1 + 2 * static_cast<uint32_t>(layer); }
uint32_t mlp_site(int layer) { return 2 + 2 * static_cast<uint32_t>(layer); }

template <class T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace

template <class P>
BlockTensors<P> block_tensors(const ParamTable& table, P base, int layer) {
  const std::string p = ParamTable::layer_prefix(layer);
  auto at = [&](const char* name) { return base + table.get(p + name).offset; };
  return {at("ln1.weight"),      at("ln1.bias"),         at("attn.qkv.weight"), at("attn.qkv.bias"),
          at("attn.proj.weight"), at("attn.proj.bias"),  at("ln2.weight"),      at("ln2.bias"),
          at("mlp.fc.weight"),   at("mlp.fc.bias"),      at("mlp.proj.weight"), at("mlp.proj.bias")};
}

template <class T>
int64_t BlockActivations<T>::size(const BlockShape& s) {
  const int64_t N = s.tokens();
  return N * s.C * 4 + N * 4 + N * 3 * s.C + int64_t{s.B} * s.NH * s.T * s.T + N * s.F * 2;
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
void block_forward(const BlockShape& s, int layer, const BlockTensors<const T*>& w, const T* x_in,
                   T* x_out, const BlockActivations<T>& a, const BlockScratch<T>& scratch,
                   const BlockDropout& dropout) {
  const int N = static_cast<int>(s.tokens());
  const int64_t row = int64_t{s.T} * s.C;
  // Attention branch.
  cpu::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x_in, w.ln1_w, w.ln1_b, N, s.C);
  cpu::linear_forward(a.qkv, a.ln1, w.qkv_w, w.qkv_b, N, s.C, 3 * s.C);
  cpu::attention_forward(a.att, a.probs, a.qkv, s.B, s.T, s.C, s.NH);
  cpu::linear_forward(scratch.branch, a.att, w.proj_w, w.proj_b, N, s.C, s.C);
  cpu::dropout_forward(scratch.branch, scratch.branch, s.B, row, dropout.p, dropout.at(attn_site(layer)));
  add(a.x_mid, x_in, scratch.branch, s.tokens() * s.C);
  // MLP branch.
  cpu::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x_mid, w.ln2_w, w.ln2_b, N, s.C);
  cpu::linear_forward(a.fc, a.ln2, w.fc_w, w.fc_b, N, s.C, s.F);
  cpu::gelu_forward(a.gelu, a.fc, s.tokens() * s.F);
  cpu::linear_forward(scratch.branch, a.gelu, w.fc2_w, w.fc2_b, N, s.F, s.C);
  cpu::dropout_forward(scratch.branch, scratch.branch, s.B, row, dropout.p, dropout.at(mlp_site(layer)));
  add(x_out, a.x_mid, scratch.branch, s.tokens() * s.C);
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
void block_backward(const BlockShape& s, int layer, const BlockTensors<const T*>& w,
                    const BlockTensors<T*>& g, const T* x_in, const BlockActivations<T>& a,
                    const BlockScratch<T>& scratch, const BlockDropout& dropout, T* dres,
                    BackwardPart part, const BlockOutputGrads<T>& d) {
  const int N = static_cast<int>(s.tokens());
  const int64_t row = int64_t{s.T} * s.C;
  const bool inputs = part != BackwardPart::kWeight;
  const bool weights = part != BackwardPart::kInput;
  auto input_grad = [inputs](T* p) { return inputs ? p : nullptr; };
  auto weight_grad = [weights](T* p) { return weights ? p : nullptr; };
  // MLP branch: dres = dL/dx_out; afterwards dres = dL/dx_mid.
  if (inputs) cpu::dropout_backward(d.mlp_proj, dres, s.B, row, dropout.p, dropout.at(mlp_site(layer)));
  cpu::linear_backward(input_grad(d.mlp_fc), weight_grad(g.fc2_w), weight_grad(g.fc2_b), d.mlp_proj,
                       a.gelu, w.fc2_w, N, s.F, s.C);
  if (inputs) cpu::gelu_backward(d.mlp_fc, a.fc, d.mlp_fc, s.tokens() * s.F);
  cpu::linear_backward(input_grad(d.ln2), weight_grad(g.fc_w), weight_grad(g.fc_b), d.mlp_fc, a.ln2,
                       w.fc_w, N, s.C, s.F);
  cpu::layernorm_backward(input_grad(dres), weight_grad(g.ln2_w), weight_grad(g.ln2_b), d.ln2, a.x_mid,
                          w.ln2_w, a.ln2_mean, a.ln2_rstd, N, s.C);
  // Attention branch: afterwards dres = dL/dx_in. The attention output's gradient has no weight to
  // feed, so it stays in scratch.
  if (inputs) cpu::dropout_backward(d.attn_proj, dres, s.B, row, dropout.p, dropout.at(attn_site(layer)));
  cpu::linear_backward(input_grad(scratch.dnc), weight_grad(g.proj_w), weight_grad(g.proj_b),
                       d.attn_proj, a.att, w.proj_w, N, s.C, s.C);
  if (inputs) {
    cpu::attention_backward(d.attn_qkv, scratch.dprobs, scratch.dnc, a.qkv, a.probs, s.B, s.T, s.C, s.NH);
  }
  cpu::linear_backward(input_grad(d.ln1), weight_grad(g.qkv_w), weight_grad(g.qkv_b), d.attn_qkv, a.ln1,
                       w.qkv_w, N, s.C, 3 * s.C);
  cpu::layernorm_backward(input_grad(dres), weight_grad(g.ln1_w), weight_grad(g.ln1_b), d.ln1, x_in,
                          w.ln1_w, a.ln1_mean, a.ln1_rstd, N, s.C);
}

#define KL_INSTANTIATE(T)                                                                        \
  template struct BlockActivations<T>;                                                          \
  template struct BlockScratch<T>;                                                              \
  template struct BlockOutputGrads<T>;                                                          \
  template BlockTensors<const T*> block_tensors<const T*>(const ParamTable&, const T*, int);    \
  template BlockTensors<T*> block_tensors<T*>(const ParamTable&, T*, int);                      \
  template void block_forward<T>(const BlockShape&, int, const BlockTensors<const T*>&, const T*, \
                                 T*, const BlockActivations<T>&, const BlockScratch<T>&,         \
                                 const BlockDropout&);                                           \
  template void block_backward<T>(const BlockShape&, int, const BlockTensors<const T*>&,        \
                                  const BlockTensors<T*>&, const T*, const BlockActivations<T>&, \
                                  const BlockScratch<T>&, const BlockDropout&, T*, BackwardPart, \
                                  const BlockOutputGrads<T>&);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl
