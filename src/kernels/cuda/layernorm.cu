// LayerNorm over the last dimension, eps 1e-5, with weight and bias. The input is the residual
// stream (fp32); the output is T (a branch's input) or fp32 (post-norm: the stream itself), and the
// incoming gradient likewise. One warp per row, statistics in fp32; the parameter gradients are
// deterministic column sums.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kRowsPerBlock = 8;  // one warp each

// The row is read three times, from cache after the first.
template <class T, class Out>
__global__ void layernorm_forward_kernel(Out* out, float* mean, float* rstd, const float* inp, const T* weight,
                                         const T* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t{row} * C;
  const float* x = inp + at;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += x[c];
  const float m = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = x[c] - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(warp_sum(v) / C + kEps);
  for (int c = lane; c < C; c += 32) {
    out[at + c] = from_float<Out>((x[c] - m) * r * to_float(weight[c]) + to_float(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

template <class T, class DOut>
__global__ void layernorm_backward_input_kernel(float* dinp, const DOut* dout, const float* inp, const T* weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t{row} * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dnorm = to_float(dout[at + c]) * to_float(weight[c]);
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * (inp[at + c] - m) * s;
  }
  dnorm_mean = warp_sum(dnorm_mean) / C;
  dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
  for (int c = lane; c < C; c += 32) {
    const float norm = (inp[at + c] - m) * s;
    dinp[at + c] += (to_float(dout[at + c]) * to_float(weight[c]) - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

template <class DOut>
struct WeightGrad {  // dy * normalised x
  const DOut* dout;
  const float *inp, *mean, *rstd;
  int cols;
  __device__ float operator()(int r, int c) const {
    const int64_t i = int64_t{r} * cols + c;
    return to_float(dout[i]) * (inp[i] - mean[r]) * rstd[r];
  }
};
template <class DOut>
struct BiasGrad {
  const DOut* dout;
  int cols;
  __device__ float operator()(int r, int c) const { return to_float(dout[int64_t{r} * cols + c]); }
};

}  // namespace

template <class T, class Out>
void layernorm_forward(Out* out, float* mean, float* rstd, const float* inp, const T* weight, const T* bias, int N,
                       int C, cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_forward_kernel<<<(N + kRowsPerBlock - 1) / kRowsPerBlock, 32 * kRowsPerBlock, 0, stream>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  KL_CHECK_LAUNCH();
}

template <class T, class DOut>
void layernorm_backward(float* dinp, float* dweight, float* dbias, const DOut* dout, const float* inp,
                        const T* weight, const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  if (N <= 0) return;
  if (dinp) {
    layernorm_backward_input_kernel<<<(N + kRowsPerBlock - 1) / kRowsPerBlock, 32 * kRowsPerBlock, 0, stream>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    KL_CHECK_LAUNCH();
  }
  // Each parameter gradient apart: a null dbias is no bias gradient, not a write through null.
  if (dweight) launch_column_sums(dweight, N, C, WeightGrad<DOut>{dout, inp, mean, rstd, C}, stream);
  if (dweight && dbias) launch_column_sums(dbias, N, C, BiasGrad<DOut>{dout, C}, stream);
}

#define KL_INSTANTIATE(T, O)                                                                                    \
  template void layernorm_forward<T, O>(O*, float*, float*, const float*, const T*, const T*, int, int,         \
                                        cudaStream_t);                                                          \
  template void layernorm_backward<T, O>(float*, float*, float*, const O*, const float*, const T*, const float*, \
                                         const float*, int, int, cudaStream_t);
KL_INSTANTIATE(float, float)
KL_INSTANTIATE(bf16, bf16)
KL_INSTANTIATE(bf16, float)
#undef KL_INSTANTIATE

}  // namespace kl::cuda
