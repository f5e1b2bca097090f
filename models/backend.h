// A backend supplies the memory and the ops that the one model walk (models/block_impl.h,
// src/pipeline/stage_impl.h) runs on. The walk is a template over the backend; nothing in it calls
// cpu:: or cuda:: directly. Backends:
//
//   CpuBackend<float>    training on the CPU (oneDNN / OpenBLAS, OpenMP)
//   CpuBackend<float, cpu::bf16>   run.precision = bf16 on the CPU (avx512_bf16): bf16 activations
//                        and a bf16 copy of the weights, oneDNN's bf16 products summed in fp32; fp32
//                        master weights, gradients, optimizer state and residual stream, as on the GPU
//   CpuBackend<double>   the finite-difference tests
//   CudaBackend<float>   src/cuda/backend.h: fp32 on the GPU
//   CudaBackend<bf16>    bf16 matrix inputs; fp32 master weights, gradients, optimizer state and
//                        residual stream (as PyTorch autocast keeps them)
//
// Two element types name every tensor's precision:
//   Act  activations that feed or leave a matrix product (LayerNorm outputs, qkv, what attention
//        keeps for its backward pass, MLP hidden units, a branch's output) and the copy of the weights the
//        passes read;
//   Acc  the master weights, their gradients, the residual stream and its gradient, LayerNorm
//        statistics, losses.
// On the CPU Act is T, or bf16 (cpu::bf16, src/kernels/cpu/bf16.h): its kernels then read bf16,
// compute in float and round what they write. An op's signature says which type each argument has,
// so the walk is typed once for every backend.
//
// Memory: Buffer<U> owns `n` zeroed elements in the backend's memory (alloc<U>(n)); pointers into
// it are only dereferenced by the backend's own ops. HostBuffer<U> (alloc_host<U>(n)) is host memory
// the backend copies to and from fastest. upload/download move data between host memory and the
// backend's, ordered with its work; download returns once the host copy is complete.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "src/kernels/cpu/ops.h"
#include "src/util/error.h"

namespace kl {

template <class T, class A = T>
class CpuBackend {
 public:
  using Act = A;
  using Acc = T;
  static constexpr bool kBf16Act = !std::is_same_v<A, T>;
  static_assert(!kBf16Act || (std::is_same_v<T, float> && std::is_same_v<A, cpu::bf16>),
                "the CPU's activations are T, or bf16 with float");
  template <class U>
  using Buffer = std::vector<U>;
  template <class U>
  using HostBuffer = std::vector<U>;

  template <class U>
  Buffer<U> alloc(int64_t n) const {
    return Buffer<U>(static_cast<size_t>(n), U(0));
  }
  template <class U>
  HostBuffer<U> alloc_host(int64_t n) const {
    return alloc<U>(n);
  }
  template <class U>
  void zero(U* p, int64_t n) const {
    std::fill(p, p + n, U(0));
  }
  template <class U>
  void copy(U* to, const U* from, int64_t n) const {
    if (to != from) std::copy(from, from + n, to);
  }
  template <class U>
  void upload(U* to, const U* host, int64_t n) const {
    copy(to, host, n);
  }
  template <class U>
  void download(U* host, const U* from, int64_t n) const {
    copy(host, from, n);
  }
  // The stream as a product's input: the same memory, or its bf16 copy in scratch.
  const Act* as_act(const Acc* x, Act* scratch, int64_t n) const {
    if constexpr (kBf16Act) {
      convert(scratch, x, n);
      return scratch;
    } else {
      return x;
    }
  }
  std::string describe() const {
    if (kBf16Act) return "CPU (bf16 activations and products, fp32 sums, master weights and stream)";
    return std::is_same_v<T, float> ? "CPU (fp32)" : "CPU (fp64)";
  }

  // --- the model's ops (src/kernels/cpu/ops.h has their contracts) ---
  void linear_forward(Act* out, const Act* inp, const Act* w, const Act* b, int N, int I, int O) const {
    cpu::linear_forward(out, inp, w, b, N, I, O);
  }
  void linear_backward(Act* dinp, Acc* dw, Acc* db, const Act* dout, const Act* inp, const Act* w, int N, int I,
                       int O) const {
    cpu::linear_backward(dinp, dw, db, dout, inp, w, N, I, O);
  }
  template <class Out>
  void layernorm_forward(Out* out, Acc* mean, Acc* rstd, const Acc* inp, const Act* w, const Act* b, int N,
                         int C) const {
    cpu::layernorm_forward(out, mean, rstd, inp, w, b, N, C);
  }
  template <class DOut>
  void layernorm_backward(Acc* dinp, Acc* dw, Acc* db, const DOut* dout, const Acc* inp, const Act* w,
                          const Acc* mean, const Acc* rstd, int N, int C) const {
    cpu::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  }
  // What attention keeps per block for its backward pass (the `stash`), and the scratch its
  // backward pass needs, in Act elements. The CPU kernel is flash-style
  // (src/kernels/cpu/attention.cpp): it keeps each row's log-sum-exp, B NH T values of T (two bf16
  // slots each with bf16 activations), and recomputes the softmax tile by tile from per-thread
  // scratch, so no T x T matrix is ever allocated.
  static int64_t attention_stash_elems(int B, int T_, int NH) {
    return int64_t{B} * NH * T_ * static_cast<int64_t>(sizeof(T) / sizeof(A));
  }
  static int64_t attention_scratch_elems(int /*B*/, int /*T_*/, int /*NH*/) { return 0; }
  void attention_forward(Act* out, Act* stash, const Act* qkv, int B, int T_, int C, int NH) const {
    cpu::attention_forward(out, lse(stash), qkv, B, T_, C, NH);
  }
  void attention_backward(Act* dqkv, Act* /*scratch*/, const Act* dout, const Act* qkv, const Act* out,
                          const Act* stash, int B, int T_, int C, int NH) const {
    cpu::attention_backward(dqkv, dout, qkv, out, lse(stash), B, T_, C, NH);
  }
  // The MLP's fc layer and its GELU: pre = inp W^T + b [N,O] (kept for the backward pass), out =
  // gelu(pre). Here the product writes pre without the bias, and one pass over it adds the bias and
  // applies GELU (no separate pass copying the bias into the product's output).
  // With bf16 activations the product adds the bias before rounding pre once.
  void linear_gelu_forward(Act* pre, Act* out, const Act* inp, const Act* w, const Act* b, int N, int I,
                           int O) const {
    if constexpr (kBf16Act) {
      cpu::linear_forward(pre, inp, w, b, N, I, O);
      cpu::gelu_forward(out, static_cast<const Act*>(pre), int64_t{N} * O);
    } else {
      cpu::linear_forward(pre, inp, w, static_cast<const T*>(nullptr), N, I, O);
      cpu::bias_gelu_forward(pre, out, b, N, O);
    }
  }
  // dpre = dout * gelu'(pre) (may alias dout), and db += colsum(dpre) unless db is null: the fc
  // layer's bias gradient, summed in the same pass.
  void gelu_backward_bias(Act* dpre, Acc* db, const Act* pre, const Act* dout, int N, int O) const {
    cpu::gelu_backward_bias(dpre, db, pre, dout, N, O);
  }
  // out = inp * mask / (1 - p) over [B, row]; the backward pass is the same call on the gradient.
  template <class In, class Out>
  void dropout(Out* out, const In* inp, int B, int64_t row, double p, const cpu::DropoutKey& key) const {
    cpu::dropout_forward(out, inp, B, row, p, key);
  }
  // Also the depth parametrisation's branch multiplier `gain` on every row kept.
  void drop_path(Act* x, int B, int64_t row, double p, const cpu::DropoutKey& key, double gain = 1.0) const {
    cpu::drop_path(x, B, row, p, key, gain);
  }
  void embedding_forward(Acc* out, const int32_t* tokens, const Act* wte, const Act* wpe, int B, int T_,
                         int C) const {
    cpu::embedding_forward(out, tokens, wte, wpe, B, T_, C);
  }
  void embedding_backward(Acc* dwte, Acc* dwpe, const Acc* dout, const int32_t* tokens, int B, int T_, int C) const {
    cpu::embedding_backward(dwte, dwpe, dout, tokens, B, T_, C);
  }
  // losses[n] for logits [N,Vp], the vocabulary their first V columns; the logits become the
  // softmax in place (lse unused on the CPU).
  void softmax_xent_forward(Acc* losses, Act* logits, Acc* /*lse*/, const int32_t* targets, int N, int V,
                            int Vp) const {
    cpu::softmax_xent_forward(losses, logits, logits, targets, N, V, Vp);
  }
  // What softmax_xent_forward left in `logits` becomes dL/dlogits = (softmax - onehot) * dloss
  // (0 in the padded columns).
  void softmax_xent_backward(Act* logits, const Acc* /*lse*/, const int32_t* targets, double dloss, int N, int V,
                             int Vp) const {
    cpu::softmax_xent_backward(logits, logits, targets, T(dloss), N, V, Vp);
  }
  // The running sum of per-token losses: add N of them, or take (and reset) the sum.
  void add_losses(const Acc* losses, int N) {
    for (int n = 0; n < N; ++n) loss_sum_ += losses[n];
  }
  double take_loss_sum() {
    const double sum = loss_sum_;
    loss_sum_ = 0.0;
    return sum;
  }
  template <class U>
  double sum_squares(const U* x, int64_t n) const {
    return cpu::sum_squares(x, n);
  }
  void scale(Acc* x, int64_t n, double factor) const { cpu::scale(x, n, T(factor)); }
  // AdamW on n master weights; the Act copy is the master itself here.
  void adamw(Acc* param, const Acc* grad, Acc* m, Acc* v, Act* /*copy*/, int64_t n, double lr, double beta1,
             double beta2, double eps, double weight_decay, int64_t step) const {
    cpu::adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
  }

  // --- the joins of a branch with the stream (models/residual.h) ---
  void add_scaled(Acc* out, double alpha, const Acc* a, const Act* b, int64_t n) const {
    cpu::add_scaled(out, T(alpha), a, b, n);
  }
  void scale_by(Act* out, const Act* scale, int scale_size, const Acc* in, int64_t n, int C) const {
    cpu::scale_by(out, scale, scale_size, in, n, C);
  }
  void scaled_join(Acc* v, const Acc* u, const Act* scale, int scale_size, const Act* branch, int64_t n,
                   int C) const {
    cpu::scaled_join(v, u, scale, scale_size, branch, n, C);
  }
  void scale_grad(Acc* grad, int scale_size, const Acc* dres, const Act* kept, int N, int C, Acc* temp) const {
    cpu::scale_grad(grad, scale_size, dres, kept, N, C, temp);
  }
  void highway_join(Act* gate, Acc* v, const Act* branch, const Acc* u, int64_t n) const {
    cpu::highway_join(gate, v, branch, u, n);
  }
  void highway_join_backward(Act* dbranch, Act* dz, Acc* dres, const Act* gate, const Act* kept, const Acc* u,
                             int64_t n) const {
    cpu::highway_join_backward(dbranch, dz, dres, gate, kept, u, n);
  }
  // Type conversions between Act and Acc (plain copies where they are one type).
  template <class From, class To>
  void convert(To* out, const From* in, int64_t n) const {
    if constexpr (std::is_same_v<From, To>) {
      copy(out, in, n);
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) cpu::store(out[i], cpu::load(in[i]));
    }
  }

 private:
  // The stash holds the log-sum-exp in T, whatever Act is (Stage carves the Act buffers at
  // even offsets: every size in a block is a multiple of B T).
  template <class Stash>
  static auto* lse(Stash* stash) {
    KL_CHECK(reinterpret_cast<uintptr_t>(stash) % alignof(T) == 0, "attention stash misaligned for its log-sum-exp");
    using Lse = std::conditional_t<std::is_const_v<Stash>, const T, T>;
    return reinterpret_cast<Lse*>(stash);
  }

  double loss_sum_ = 0.0;
};

// run.precision = bf16 on the CPU.
using CpuBf16Backend = CpuBackend<float, cpu::bf16>;

}  // namespace kl
