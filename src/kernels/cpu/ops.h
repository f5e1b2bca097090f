// CPU kernels. Each op's forward and backward live side by side in one file of this folder.
// All are templated on the scalar type: float for training, double for the finite-difference tests.
// Where an argument is an activation (models/backend.h's Act), its element type may also be bf16
// (the CPU's bf16 activations, run.precision = bf16): the kernel reads it into float, computes in
// float and rounds what it writes; the other arguments (Acc: the stream, statistics, gradients of
// the master weights) stay float.
//
// Shapes use the usual names: B batch rows, T positions, C model width, NH heads, V vocabulary,
// N = B x T token rows. Matrices are row-major; Linear weights are stored [out, in] like PyTorch.
//
// Gradient rule (see models/block.cpp): backward functions ASSIGN (=) gradients of activations and
// ACCUMULATE (+=) gradients of parameters, except layernorm_backward, which accumulates into dinp
// because a layernorm input is the residual stream, which collects gradient from two paths.
#pragma once

#include <cstdint>

#include "src/kernels/cpu/bf16.h"

namespace kl::cpu {

// The type a kernel computes in for elements of type A: float for bf16, else A itself.
template <class A>
struct compute_type {
  using type = A;
};
template <>
struct compute_type<bf16> {
  using type = float;
};
template <class A>
using compute_t = typename compute_type<A>::type;

// C[m,n] = alpha * op(A) op(B) + beta * C, row-major: fp32 through oneDNN's sgemm (OpenBLAS in a
// build without oneDNN, -DKL_ONEDNN=OFF), fp64 through OpenBLAS (a plain OpenMP loop in a build
// without BLAS, -DKL_BLAS=OFF).
template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);

// out[N,O] = inp[N,I] W[O,I]^T + bias[O]   (bias may be null)
template <class T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int I, int O);
// dinp = dout W;  dweight += dout^T inp;  dbias += colsum(dout)   (each may be null: the input
// and the weight halves run apart in the zero-bubble pipeline schedule)
template <class T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int I, int O);
// The same on bf16 activations and a bf16 copy of the weights (oneDNN's bf16 matmul, fp32 sums):
// out is rounded once, after the bias; the parameter gradients are fp32.
void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int I, int O);
void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                     int N, int I, int O);

// out = (inp - mean) * rstd * weight + bias, per row of C; saves mean and rstd [N].
// Out and W (the output, the weight and bias) may be bf16.
template <class T, class Out = T, class W = T>
void layernorm_forward(Out* out, T* mean, T* rstd, const T* inp, const W* weight, const W* bias,
                       int N, int C);
// dinp += ..., dweight += ..., dbias += ...   (dinp null: the parameter half only; dweight null:
// the input half only, dbias then ignored; dbias null: no bias gradient). dinp must not overlap
// dout or inp: the two halves run without a barrier between them.
template <class T, class DOut = T, class W = T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const DOut* dout, const T* inp,
                        const W* weight, const T* mean, const T* rstd, int N, int C);

// Causal multi-head self-attention over a fused qkv [B,T,3C] (q | k | v, each C = NH x head size),
// flash-style (attention.cpp): out is [B,T,C] (heads concatenated); lse [B,NH,T] keeps each row's
// log-sum-exp of the scaled scores for the backward pass, which recomputes the softmax from it.
// No T x T matrix is kept: attention_stash_elems (models/backend.h) is B NH T. With bf16
// activations each head's q, k, v (and dO) are read into float tiles, and lse stays float.
template <class A>
void attention_forward(A* out, compute_t<A>* lse, const A* qkv, int B, int T_, int C, int NH);
// dqkv = ... (assigned); out and lse are what attention_forward wrote.
template <class A>
void attention_backward(A* dqkv, const A* dout, const A* qkv, const A* out, const compute_t<A>* lse, int B, int T_,
                        int C, int NH);

// GELU, exact erf form: 0.5 x (1 + erf(x / sqrt 2)).
template <class T>
void gelu_forward(T* out, const T* inp, int64_t n);
template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n);
// The MLP's fc bias fused into its GELU, over [N,O]: pre holds the product inp W^T on entry and the
// pre-activation (+ bias[O]) on return, what the backward pass reads; out = gelu(pre).
template <class T>
void bias_gelu_forward(T* pre, T* out, const T* bias, int N, int O);
// dpre = dout * gelu'(pre) (may alias dout); dbias += colsum(dpre) when dbias is not null, summed
// as linear_backward sums its bias gradient (so the fc layer's bias needs no pass of its own).
template <class T, class S = T>
void gelu_backward_bias(T* dpre, S* dbias, const T* pre, const T* dout, int N, int O);

// Dropout whose mask is a pure function of (seed, step, global sample, site, position, channel).
struct DropoutKey {
  uint64_t seed = 0;
  int64_t step = 0;
  int64_t first_sample = 0;  // global index of row 0 of this batch
  uint32_t site = 0;         // which dropout in the network
};
// out = inp * keep / (1 - p) over [B, T*C] (out may alias inp); p == 0 copies.
template <class Out, class In = Out>
void dropout_forward(Out* out, const In* inp, int B, int64_t row, double p, const DropoutKey& key);
// dinp = dout * keep / (1 - p) (may alias).
template <class Out, class In = Out>
void dropout_backward(Out* dinp, const In* dout, int B, int64_t row, double p, const DropoutKey& key);

// Drop-path (stochastic depth), in place over [B, row]: row b is zeroed with probability p, drawn
// once per (seed, step, global sample, site), else scaled by gain / (1 - p) (gain: the depth
// parametrisation's branch multiplier; p = 0 scales every row by gain). Its own backward.
template <class T>
void drop_path(T* x, int B, int64_t row, double p, const DropoutKey& key, double gain = 1.0);

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]
template <class T, class W = T>
void embedding_forward(T* out, const int32_t* tokens, const W* wte, const W* wpe, int B, int T_,
                       int C);
// dwte += scatter(dout), dwpe += sum over batch
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int T_,
                        int C);

// Fused softmax + cross-entropy over logits [N,Vp] whose first V columns are the vocabulary (Vp > V:
// a padded head, model.vocab_padded): losses[n] = -log softmax(logits[n][0, V))[target[n]];
// probs [N,Vp] is kept for the backward pass (it may alias logits), 0 in the padded columns.
// (With bf16 logits the loss is computed from the float probabilities, before they are rounded.)
template <class T, class A = T>
void softmax_xent_forward(T* losses, A* probs, const A* logits, const int32_t* targets, int N, int V, int Vp);
// dlogits = (probs - onehot(target)) * dloss in the first V columns, 0 in the rest (may alias probs)
template <class A>
void softmax_xent_backward(A* dlogits, const A* probs, const int32_t* targets, compute_t<A> dloss, int N, int V,
                           int Vp);

// --- residual.cpp: the joins of a branch with the residual stream (models/residual.h) ---
// T: the stream (Acc); A: the branch's tensors (Act), float or bf16.
// out = alpha * a + b   (out may alias a)
template <class T, class A = T>
void add_scaled(T* out, T alpha, const T* a, const A* b, int64_t n);
// out[i] = scale[s(i)] * in[i], s(i) = 0 when scale_size == 1, else i % C   (rezero, layerscale)
template <class T, class A = T>
void scale_by(A* out, const A* scale, int scale_size, const T* in, int64_t n, int C);
// v[i] = u[i] + scale[s(i)] * branch[i]
template <class T, class A = T>
void scaled_join(T* v, const T* u, const A* scale, int scale_size, const A* branch, int64_t n, int C);
// grad[s(c)] += sum over rows n of dres[n,c] * kept[n,c]; temp: C elements of scratch.
template <class T, class A = T>
void scale_grad(T* grad, int scale_size, const T* dres, const A* kept, int N, int C, T* temp);
// Highway: gate holds z on entry and g = sigmoid(z) on return; v = g * branch + (1 - g) * u.
template <class T, class A = T>
void highway_join(A* gate, T* v, const A* branch, const T* u, int64_t n);
// dbranch = g dv; dz = (kept - u) dv g (1 - g); dres = (1 - g) dv (dres holds dv on entry).
template <class T, class A = T>
void highway_join_backward(A* dbranch, A* dz, T* dres, const A* gate, const A* kept, const T* u, int64_t n);

// One AdamW step (decoupled weight decay, PyTorch's formulation) on n values; `step` counts from 1.
template <class T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step);

// Sum of squares in double, deterministic for a fixed thread count.
template <class T>
double sum_squares(const T* x, int64_t n);
// x *= factor
template <class T>
void scale(T* x, int64_t n, T factor);

}  // namespace kl::cpu
