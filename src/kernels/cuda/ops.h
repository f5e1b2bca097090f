// CUDA kernels, the GPU counterparts of src/kernels/cpu/ops.h. One .cu per op family in this folder,
// forward and backward side by side; kernels are static, launchers take an explicit stream and
// check the launch. Nothing synchronises the host.
//
// Precision: T is the activation and parameter-copy type, float (run.precision = fp32) or bf16
// (run.precision = bf16). Whatever T, these stay fp32: LayerNorm statistics, losses, parameter
// gradients, the residual stream's gradient (it sums two branches per block over hundreds of
// blocks), the master weights, the optimizer state and every reduction.
//
// Gradient rule, as on the CPU: backward functions ASSIGN activation gradients and ACCUMULATE (+=)
// parameter gradients; layernorm_backward accumulates into dinp (the residual stream).
//
// Determinism: no atomics. Column sums (bias, LayerNorm and embedding gradients) walk the rows in
// a fixed order, so a run is bitwise reproducible on the same GPU and library versions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "src/kernels/cpu/ops.h"  // DropoutKey

namespace kl::cuda {

using bf16 = __nv_bfloat16;
class Blas;  // src/kernels/cuda/cublaslt.h

// --- elementwise.cu ---
// out = in, converted (float <-> bf16, or a plain copy).
template <class From, class To>
void convert(To* out, const From* in, int64_t n, cudaStream_t stream);
// out = a + b (out may alias either).
template <class T>
void add(T* out, const T* a, const T* b, int64_t n, cudaStream_t stream);
// out[c] += sum over rows r of in[r, c], rows in order (bias gradients).
template <class T>
void column_sums_accumulate(float* out, const T* in, int rows, int cols, cudaStream_t stream);

// --- residual.cu: the joins of a branch (T) with the fp32 residual stream (cpu/ops.h's residual.cpp) ---
// out = alpha * a + b   (out may alias a)
template <class T>
void add_scaled(float* out, float alpha, const float* a, const T* b, int64_t n, cudaStream_t stream);
// out[i] = scale[s(i)] * in[i], s(i) = 0 when scale_size == 1, else i % C
template <class T>
void scale_by(T* out, const T* scale, int scale_size, const float* in, int64_t n, int C, cudaStream_t stream);
// v[i] = u[i] + scale[s(i)] * branch[i]
template <class T>
void scaled_join(float* v, const float* u, const T* scale, int scale_size, const T* branch, int64_t n, int C,
                 cudaStream_t stream);
// grad[s(c)] += sum over rows n of dres[n,c] * kept[n,c] (rows in a fixed order); temp: C floats.
template <class T>
void scale_grad(float* grad, int scale_size, const float* dres, const T* kept, int N, int C, float* temp,
                cudaStream_t stream);
// Highway: gate holds z on entry and g = sigmoid(z) on return; v = g * branch + (1 - g) * u.
template <class T>
void highway_join(T* gate, float* v, const T* branch, const float* u, int64_t n, cudaStream_t stream);
// dbranch = g dv; dz = (kept - u) dv g (1 - g); dres = (1 - g) dv (dres holds dv on entry).
template <class T>
void highway_join_backward(T* dbranch, T* dz, float* dres, const T* gate, const T* kept, const float* u, int64_t n,
                           cudaStream_t stream);

// --- matmul.cu: the Linear layer on cuBLASLt (the bias rides in the matmul epilogue) ---
// out[N,O] = inp[N,I] W[O,I]^T + bias[O]   (bias may be null)
template <class T>
void linear_forward(Blas& blas, T* out, const T* inp, const T* weight, const T* bias, int N, int I, int O,
                    cudaStream_t stream);
// dinp = dout W;  dweight += dout^T inp;  dbias += colsum(dout)   (each may be null)
template <class T>
void linear_backward(Blas& blas, T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                     const T* weight, int N, int I, int O, cudaStream_t stream);

// --- embedding.cu ---
// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]
// The output is the residual stream, fp32 whatever T.
template <class T>
void embedding_forward(float* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int T_, int C,
                       cudaStream_t stream);
// dwte += scatter(dout), dwpe += sum over the batch (fp32 throughout).
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T_,
                        int C, cudaStream_t stream);

// --- layernorm.cu (eps 1e-5) ---
// out = (inp - mean) * rstd * weight + bias per row of C; saves mean and rstd [N].
// The input is the residual stream (fp32); Out is T (a branch's input, the final norm) or float (the
// post-norm variants, whose LayerNorm output is the stream).
template <class T, class Out>
void layernorm_forward(Out* out, float* mean, float* rstd, const float* inp, const T* weight, const T* bias, int N,
                       int C, cudaStream_t stream);
// dinp += ...; dweight += ...; dbias += ...   (dinp null: the parameter half only; dweight null:
// the input half only)
// DOut is T (pre-norm: the branch's input gradient) or float (post-norm: the stream's gradient).
template <class T, class DOut>
void layernorm_backward(float* dinp, float* dweight, float* dbias, const DOut* dout, const float* inp,
                        const T* weight, const float* mean, const float* rstd, int N, int C, cudaStream_t stream);

// --- attention.cu: causal multi-head attention over a fused qkv [B,T,3C] ---
// probs [B,NH,T,T] keeps the softmax (exact zeros above the diagonal); out [B,T,C].
template <class T>
void attention_forward(Blas& blas, T* out, T* probs, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream);
// dqkv = ...; dprobs is scratch of the size of probs.
template <class T>
void attention_backward(Blas& blas, T* dqkv, T* dprobs, const T* dout, const T* qkv, const T* probs, int B, int T_,
                        int C, int NH, cudaStream_t stream);

// --- gelu.cu (exact erf form, as the CPU) ---
template <class T>
void gelu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream);
// dinp = dout * gelu'(inp) (may alias dout)
template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n, cudaStream_t stream);
// dpre = dout * gelu'(pre) over [N,O] (may alias dout); dbias += colsum(dpre) unless dbias is null
template <class T>
void gelu_backward_bias(T* dpre, float* dbias, const T* pre, const T* dout, int N, int O, cudaStream_t stream);

// --- dropout.cu: the CPU's counter-based masks, bit for bit ---
// out = inp * keep / (1 - p) over [B, row] (out may alias inp; p == 0 copies). The backward pass is
// the same call on the gradient. Instantiated for (float, float), (bf16, bf16) and (float, bf16):
// the last takes the fp32 residual gradient into a bf16 branch gradient.
template <class In, class Out>
void dropout(Out* out, const In* inp, int B, int64_t row, double p, const cpu::DropoutKey& key,
             cudaStream_t stream);
// Drop-path (stochastic depth) in place over [B, row], the CPU's draw: row b is zeroed when
// rng::uniform(key of sample b, 0) <= p, else scaled by gain / (1 - p) (p = 0: every row by gain).
template <class T>
void drop_path(T* x, int B, int64_t row, double p, const cpu::DropoutKey& key, cudaStream_t stream,
               double gain = 1.0);

// --- softmax_xent.cu: fused softmax + cross-entropy over logits [N,Vp], the vocabulary their first V columns ---
// losses[n] = -log softmax(logits[n][0, V))[target[n]]; lse[n] = its log sum exp, for the backward.
template <class T>
void softmax_xent_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V, int Vp,
                          cudaStream_t stream);
// dlogits = (softmax(logits) - onehot(target)) * dloss in the first V columns, 0 in the rest (may alias logits)
template <class T>
void softmax_xent_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, float dloss,
                           int N, int V, int Vp, cudaStream_t stream);
// *sum += sum of losses[0, N), in a fixed order (one block).
void loss_sum_accumulate(double* sum, const float* losses, int N, cudaStream_t stream);

// --- adamw.cu: the optimizer and the global-norm reduction ---
// One AdamW step on n fp32 master weights (the CPU op's formula, PyTorch's); `copy` (may be null)
// receives the updated weights in T (the bf16 copy the forward pass reads).
template <class T>
void adamw_update(float* param, const float* grad, float* m, float* v, T* copy, int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step, cudaStream_t stream);
// *out = sum of x[i]^2 in double: kSumSquaresPartials fixed partial sums, then one block adds them
// in order (deterministic). `partials` holds kSumSquaresPartials doubles.
inline constexpr int kSumSquaresPartials = 512;
template <class T>
void sum_squares(double* out, const T* x, int64_t n, double* partials, cudaStream_t stream);
// x *= factor (gradient clipping)
void scale(float* x, int64_t n, float factor, cudaStream_t stream);

}  // namespace kl::cuda
