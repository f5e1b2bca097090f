// The CUDA backends of the model walk (models/backend.h has the contract): T = float, or bf16 for
// bf16 matrix inputs with fp32 master weights, gradients, optimizer state and residual stream.
// Every op is queued on one non-blocking stream; nothing synchronises the host but download(),
// sum_squares() and take_loss_sum(), which return values to it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "src/cuda/device.h"
#include "src/kernels/cuda/cublaslt.h"
#include "src/kernels/cuda/ops.h"

namespace kl::cuda {

template <class T>
class CudaBackend {
 public:
  using Act = T;
  using Acc = float;
  template <class U>
  using Buffer = DeviceBuffer<U>;
  template <class U>
  using HostBuffer = PinnedBuffer<U>;

  // On the current device (select_device()); tf32: fp32 products may use TF32 tensor cores.
  CudaBackend(int device, bool tf32);
  ~CudaBackend();
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  cudaStream_t stream() const { return stream_; }
  std::string describe() const;

  template <class U>
  Buffer<U> alloc(int64_t n) {
    Buffer<U> b(n);
    b.zero(stream_);
    return b;
  }
  template <class U>
  HostBuffer<U> alloc_host(int64_t n) {
    return HostBuffer<U>(n);
  }
  template <class U>
  void zero(U* p, int64_t n) {
    if (n > 0) KL_CHECK_CUDA(cudaMemsetAsync(p, 0, static_cast<size_t>(n) * sizeof(U), stream_));
  }
  template <class U>
  void copy(U* to, const U* from, int64_t n) {
    if (n > 0 && to != from) {
      KL_CHECK_CUDA(cudaMemcpyAsync(to, from, static_cast<size_t>(n) * sizeof(U), cudaMemcpyDeviceToDevice, stream_));
    }
  }
  // From pageable host memory: returns once the host buffer may be reused.
  template <class U>
  void upload(U* to, const U* host, int64_t n) {
    if (n <= 0) return;
    KL_CHECK_CUDA(cudaMemcpyAsync(to, host, static_cast<size_t>(n) * sizeof(U), cudaMemcpyHostToDevice, stream_));
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  }
  template <class U>
  void download(U* host, const U* from, int64_t n) {
    if (n <= 0) return;
    KL_CHECK_CUDA(cudaMemcpyAsync(host, from, static_cast<size_t>(n) * sizeof(U), cudaMemcpyDeviceToHost, stream_));
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  }
  template <class From, class To>
  void convert(To* out, const From* in, int64_t n) {
    cuda::convert<From, To>(out, in, n, stream_);
  }
  // The stream as a product's input: converted into `scratch` for bf16, itself for fp32.
  const Act* as_act(const Acc* x, Act* scratch, int64_t n) {
    if constexpr (std::is_same_v<Act, Acc>) {
      return x;
    } else {
      convert(scratch, x, n);
      return scratch;
    }
  }

  void linear_forward(Act* out, const Act* inp, const Act* w, const Act* b, int N, int I, int O) {
    cuda::linear_forward<T>(*blas_, out, inp, w, b, N, I, O, stream_);
  }
  void linear_backward(Act* dinp, Acc* dw, Acc* db, const Act* dout, const Act* inp, const Act* w, int N, int I,
                       int O) {
    cuda::linear_backward<T>(*blas_, dinp, dw, db, dout, inp, w, N, I, O, stream_);
  }
  template <class Out>
  void layernorm_forward(Out* out, Acc* mean, Acc* rstd, const Acc* inp, const Act* w, const Act* b, int N, int C) {
    cuda::layernorm_forward<T, Out>(out, mean, rstd, inp, w, b, N, C, stream_);
  }
  template <class DOut>
  void layernorm_backward(Acc* dinp, Acc* dw, Acc* db, const DOut* dout, const Acc* inp, const Act* w,
                          const Acc* mean, const Acc* rstd, int N, int C) {
    cuda::layernorm_backward<T, DOut>(dinp, dw, db, dout, inp, w, mean, rstd, N, C, stream_);
  }
  // Attention keeps the full softmax P [B,NH,T,T] for its backward pass, and the backward pass a
  // scratch dS of that size (the CPU backend's flash-style kernel keeps neither).
  static int64_t attention_stash_elems(int B, int T_, int NH) { return int64_t{B} * NH * T_ * T_; }
  static int64_t attention_scratch_elems(int B, int T_, int NH) { return int64_t{B} * NH * T_ * T_; }
  void attention_forward(Act* out, Act* probs, const Act* qkv, int B, int T_, int C, int NH) {
    cuda::attention_forward<T>(*blas_, out, probs, qkv, B, T_, C, NH, stream_);
  }
  // `out` (the forward pass's output) is unused here: the stash is the softmax itself.
  void attention_backward(Act* dqkv, Act* dprobs, const Act* dout, const Act* qkv, const Act* /*out*/,
                          const Act* probs, int B, int T_, int C, int NH) {
    cuda::attention_backward<T>(*blas_, dqkv, dprobs, dout, qkv, probs, B, T_, C, NH, stream_);
  }
  // The bias stays in the product's epilogue (one rounding of the bf16 output, not two); GELU is
  // the erf form, which cuBLASLt's GELU epilogues are not (src/kernels/cuda/gelu.cu).
  void linear_gelu_forward(Act* pre, Act* out, const Act* inp, const Act* w, const Act* b, int N, int I, int O) {
    cuda::linear_forward<T>(*blas_, pre, inp, w, b, N, I, O, stream_);
    cuda::gelu_forward(out, static_cast<const Act*>(pre), int64_t{N} * O, stream_);
  }
  void gelu_backward_bias(Act* dpre, Acc* db, const Act* pre, const Act* dout, int N, int O) {
    cuda::gelu_backward_bias<T>(dpre, db, pre, dout, N, O, stream_);
  }
  template <class In, class Out>
  void dropout(Out* out, const In* inp, int B, int64_t row, double p, const cpu::DropoutKey& key) {
    cuda::dropout<In, Out>(out, inp, B, row, p, key, stream_);
  }
  void drop_path(Act* x, int B, int64_t row, double p, const cpu::DropoutKey& key, double gain = 1.0) {
    if (p > 0.0 || gain != 1.0) cuda::drop_path<T>(x, B, row, p, key, stream_, gain);
  }
  void embedding_forward(Acc* out, const int32_t* tokens, const Act* wte, const Act* wpe, int B, int T_, int C) {
    cuda::embedding_forward<T>(out, tokens, wte, wpe, B, T_, C, stream_);
  }
  void embedding_backward(Acc* dwte, Acc* dwpe, const Acc* dout, const int32_t* tokens, int B, int T_, int C) {
    cuda::embedding_backward(dwte, dwpe, dout, tokens, B, T_, C, stream_);
  }
  void softmax_xent_forward(Acc* losses, Act* logits, Acc* lse, const int32_t* targets, int N, int V, int Vp) {
    cuda::softmax_xent_forward<T>(losses, lse, logits, targets, N, V, Vp, stream_);
  }
  void softmax_xent_backward(Act* logits, const Acc* lse, const int32_t* targets, double dloss, int N, int V,
                             int Vp) {
    cuda::softmax_xent_backward<T>(logits, logits, lse, targets, static_cast<float>(dloss), N, V, Vp, stream_);
  }
  void add_losses(const Acc* losses, int N) { loss_sum_accumulate(loss_sum_.data(), losses, N, stream_); }
  double take_loss_sum();
  template <class U>
  double sum_squares(const U* x, int64_t n) {
    cuda::sum_squares<U>(scalar_.data(), x, n, partials_.data(), stream_);
    double value = 0.0;
    download(&value, static_cast<const double*>(scalar_.data()), 1);
    return value;
  }
  void scale(Acc* x, int64_t n, double factor) { cuda::scale(x, n, static_cast<float>(factor), stream_); }
  void adamw(Acc* param, const Acc* grad, Acc* m, Acc* v, Act* copy, int64_t n, double lr, double beta1,
             double beta2, double eps, double weight_decay, int64_t step) {
    cuda::adamw_update<T>(param, grad, m, v, copy, n, lr, beta1, beta2, eps, weight_decay, step, stream_);
  }

  void add_scaled(Acc* out, double alpha, const Acc* a, const Act* b, int64_t n) {
    cuda::add_scaled<T>(out, static_cast<float>(alpha), a, b, n, stream_);
  }
  void scale_by(Act* out, const Act* scale, int scale_size, const Acc* in, int64_t n, int C) {
    cuda::scale_by<T>(out, scale, scale_size, in, n, C, stream_);
  }
  void scaled_join(Acc* v, const Acc* u, const Act* scale, int scale_size, const Act* branch, int64_t n, int C) {
    cuda::scaled_join<T>(v, u, scale, scale_size, branch, n, C, stream_);
  }
  void scale_grad(Acc* grad, int scale_size, const Acc* dres, const Act* kept, int N, int C, Acc* temp) {
    cuda::scale_grad<T>(grad, scale_size, dres, kept, N, C, temp, stream_);
  }
  void highway_join(Act* gate, Acc* v, const Act* branch, const Acc* u, int64_t n) {
    cuda::highway_join<T>(gate, v, branch, u, n, stream_);
  }
  void highway_join_backward(Act* dbranch, Act* dz, Acc* dres, const Act* gate, const Act* kept, const Acc* u,
                             int64_t n) {
    cuda::highway_join_backward<T>(dbranch, dz, dres, gate, kept, u, n, stream_);
  }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Blas> blas_;
  DeviceBuffer<double> loss_sum_, scalar_, partials_;
};

}  // namespace kl::cuda
