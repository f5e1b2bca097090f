// Causal multi-head attention: per (batch row b, head h), S = Q K^T / sqrt(hs), P = softmax over
// j <= i, out = P V.
//
// Which: cuBLASLt strided-batched products with a fused causal softmax (not a fused
// flash-attention kernel). Why: the products run on cuBLASLt's tuned tensor-core kernels in both
// precisions, the one hand-written kernel is a row softmax that is easy to check against the CPU,
// and the saved probabilities P make the backward pass the CPU's formulas. The price is the
// [B,NH,T,T] probabilities per block (use parallel.recompute = block at long contexts) and the
// masked upper triangle computed and then zeroed (the products do twice the causal work).
//
// No permutation copies: within one batch row b, head h of q (k, v) starts at column h x hs of
// qkv [T, 3C] with leading dimension 3C, so the NH heads are a strided batch (stride hs); the
// output heads likewise inside out [T, C], and the probabilities are [NH, T, T] contiguous.
// One batched product per batch row.
#include <cmath>

#include "src/kernels/cuda/common.cuh"
#include "src/kernels/cuda/cublaslt.h"

namespace kl::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row of P

// In place over rows of S [B*NH*T, T]: row i of its head (i = row % T) becomes softmax over
// j <= i, zeros above the diagonal. fp32 inside.
template <class T>
__global__ void causal_softmax_kernel(T* p, int64_t rows, int T_) {
  const int64_t row = int64_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int i = static_cast<int>(row % T_);
  T* s = p + row * T_;
  float max = -INFINITY;
  for (int j = lane; j <= i; j += 32) max = fmaxf(max, to_float(s[j]));
  max = warp_max(max);
  float sum = 0.0f;
  for (int j = lane; j <= i; j += 32) sum += expf(to_float(s[j]) - max);
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T_; j += 32) s[j] = from_float<T>(j <= i ? expf(to_float(s[j]) - max) * inv : 0.0f);
}

// In place over dP: dS = P * (dP - rowsum(P * dP)) for j <= i, zeros above the diagonal.
template <class T>
__global__ void causal_softmax_backward_kernel(T* ds, const T* p, int64_t rows, int T_) {
  const int64_t row = int64_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int i = static_cast<int>(row % T_);
  T* d = ds + row * T_;
  const T* pr = p + row * T_;
  float dot = 0.0f;
  for (int j = lane; j <= i; j += 32) dot += to_float(pr[j]) * to_float(d[j]);
  dot = warp_sum(dot);
  for (int j = lane; j < T_; j += 32) {
    d[j] = from_float<T>(j <= i ? to_float(pr[j]) * (to_float(d[j]) - dot) : 0.0f);
  }
}

// One batch row's heads as a strided batch: row-major operands with leading dimension ld, head h
// at data + h * stride.
template <class T>
Operand heads(const T* data, int ld, int64_t stride) {
  return {data, dtype_of<T>(), ld, stride};
}

template <class T>
void batched(Blas& blas, bool trans_a, bool trans_b, int m, int n, int k, float alpha, Operand a, Operand b, T* c,
             int ldc, int64_t stride_c, int NH, cudaStream_t stream) {
  Gemm g;
  g.trans_a = trans_a, g.trans_b = trans_b;
  g.m = m, g.n = n, g.k = k;
  g.batch = NH;
  g.alpha = alpha;
  g.a = a, g.b = b;
  g.c = c, g.c_type = dtype_of<T>(), g.ldc = ldc, g.stride_c = stride_c;
  blas.gemm(g, stream);
}

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

template <class T>
void attention_forward(Blas& blas, T* out, T* probs, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
  const int hs = C / NH, ld = 3 * C;
  const int64_t square = int64_t{T_} * T_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    const T* q = qkv + int64_t{b} * T_ * ld;
    T* p = probs + int64_t{b} * NH * square;
    // S = scale Q K^T   [T, T] per head
    batched(blas, false, true, T_, T_, hs, scale, heads(q, ld, hs), heads(q + C, ld, hs), p, T_, square, NH, stream);
  }
  const int64_t rows = int64_t{B} * NH * T_;
  causal_softmax_kernel<<<row_blocks(rows), 32 * kRowsPerBlock, 0, stream>>>(probs, rows, T_);
  KL_CHECK_LAUNCH();
  for (int b = 0; b < B; ++b) {
    const T* q = qkv + int64_t{b} * T_ * ld;
    const T* p = probs + int64_t{b} * NH * square;
    // out = P V   [T, hs] per head, into columns h x hs of out [T, C]
    batched(blas, false, false, T_, hs, T_, 1.0f, heads(p, T_, square), heads(q + 2 * C, ld, hs),
            out + int64_t{b} * T_ * C, C, hs, NH, stream);
  }
}

template <class T>
void attention_backward(Blas& blas, T* dqkv, T* dprobs, const T* dout, const T* qkv, const T* probs, int B, int T_,
                        int C, int NH, cudaStream_t stream) {
  const int hs = C / NH, ld = 3 * C;
  const int64_t square = int64_t{T_} * T_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    const T* q = qkv + int64_t{b} * T_ * ld;
    const T* dy = dout + int64_t{b} * T_ * C;
    const T* p = probs + int64_t{b} * NH * square;
    T* dq = dqkv + int64_t{b} * T_ * ld;
    // dP = dY V^T   [T, T]
    batched(blas, false, true, T_, T_, hs, 1.0f, heads(dy, C, hs), heads(q + 2 * C, ld, hs),
            dprobs + int64_t{b} * NH * square, T_, square, NH, stream);
    // dV = P^T dY   [T, hs]
    batched(blas, true, false, T_, hs, T_, 1.0f, heads(p, T_, square), heads(dy, C, hs), dq + 2 * C, ld, hs, NH,
            stream);
  }
  const int64_t rows = int64_t{B} * NH * T_;
  causal_softmax_backward_kernel<<<row_blocks(rows), 32 * kRowsPerBlock, 0, stream>>>(dprobs, probs, rows, T_);
  KL_CHECK_LAUNCH();
  for (int b = 0; b < B; ++b) {
    const T* q = qkv + int64_t{b} * T_ * ld;
    const T* ds = dprobs + int64_t{b} * NH * square;
    T* dq = dqkv + int64_t{b} * T_ * ld;
    // dQ = scale dS K, dK = scale dS^T Q   [T, hs]
    batched(blas, false, false, T_, hs, T_, scale, heads(ds, T_, square), heads(q + C, ld, hs), dq, ld, hs, NH,
            stream);
    batched(blas, true, false, T_, hs, T_, scale, heads(ds, T_, square), heads(q, ld, hs), dq + C, ld, hs, NH,
            stream);
  }
}

#define KL_INSTANTIATE(T)                                                                                     \
  template void attention_forward<T>(Blas&, T*, T*, const T*, int, int, int, int, cudaStream_t);             \
  template void attention_backward<T>(Blas&, T*, T*, const T*, const T*, const T*, int, int, int, int,         \
                                      cudaStream_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cuda
