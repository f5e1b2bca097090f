// LayerNorm over the last dimension, eps 1e-5, with weight and bias; the residual add fused into the
// forward pass where a branch joins the stream right before a LayerNorm (x_mid = x + attn; LN2).
// One warp per row, statistics in fp32; the parameter gradients are deterministic column sums.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kRowsPerBlock = 8;  // one warp each

// out = LN(x) for the row `x` (in registers' reach: read twice from cache). With `b`, the row is
// a + b, stored to `sum` first.
template <class T>
__global__ void layernorm_forward_kernel(T* sum, T* out, float* mean, float* rstd, const T* a, const T* b,
                                         const T* weight, const T* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t{row} * C;
  const T* x = a + at;
  if (b) {
    for (int c = lane; c < C; c += 32) sum[at + c] = from_float<T>(to_float(a[at + c]) + to_float(b[at + c]));
    __syncwarp();
    x = sum + at;
  }
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += to_float(x[c]);
  const float m = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = to_float(x[c]) - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(warp_sum(v) / C + kEps);
  for (int c = lane; c < C; c += 32) {
    out[at + c] = from_float<T>((to_float(x[c]) - m) * r * to_float(weight[c]) + to_float(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

template <class T>
__global__ void layernorm_backward_input_kernel(float* dinp, const T* dout, const T* inp, const T* weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const int64_t at = int64_t{row} * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dnorm = to_float(dout[at + c]) * to_float(weight[c]);
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * (to_float(inp[at + c]) - m) * s;
  }
  dnorm_mean = warp_sum(dnorm_mean) / C;
  dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
  for (int c = lane; c < C; c += 32) {
    const float norm = (to_float(inp[at + c]) - m) * s;
    dinp[at + c] += (to_float(dout[at + c]) * to_float(weight[c]) - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

template <class T>
struct WeightGrad {  // dy * normalised x
  const T *dout, *inp;
  const float *mean, *rstd;
  int cols;
  __device__ float operator()(int r, int c) const {
    const int64_t i = int64_t{r} * cols + c;
    return to_float(dout[i]) * (to_float(inp[i]) - mean[r]) * rstd[r];
  }
};
template <class T>
struct BiasGrad {
  const T* dout;
  int cols;
  __device__ float operator()(int r, int c) const { return to_float(dout[int64_t{r} * cols + c]); }
};

template <class T>
void launch_forward(T* sum, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight, const T* bias,
                    int N, int C, cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_forward_kernel<<<(N + kRowsPerBlock - 1) / kRowsPerBlock, 32 * kRowsPerBlock, 0, stream>>>(
      sum, out, mean, rstd, a, b, weight, bias, N, C);
  KL_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                       cudaStream_t stream) {
  launch_forward<T>(nullptr, out, mean, rstd, inp, nullptr, weight, bias, N, C, stream);
}

template <class T>
void add_layernorm_forward(T* sum, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                           const T* bias, int N, int C, cudaStream_t stream) {
  launch_forward<T>(sum, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

template <class T>
void layernorm_backward(float* dinp, float* dweight, float* dbias, const T* dout, const T* inp, const T* weight,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  if (N <= 0) return;
  if (dinp) {
    layernorm_backward_input_kernel<<<(N + kRowsPerBlock - 1) / kRowsPerBlock, 32 * kRowsPerBlock, 0, stream>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    KL_CHECK_LAUNCH();
  }
  if (dweight) {
    launch_column_sums(dweight, N, C, WeightGrad<T>{dout, inp, mean, rstd, C}, stream);
    launch_column_sums(dbias, N, C, BiasGrad<T>{dout, C}, stream);
  }
}

#define KL_INSTANTIATE(T)                                                                                     \
  template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int, int, cudaStream_t); \
  template void add_layernorm_forward<T>(T*, T*, float*, float*, const T*, const T*, const T*, const T*, int,   \
                                         int, cudaStream_t);                                                  \
  template void layernorm_backward<T>(float*, float*, float*, const T*, const T*, const T*, const float*,       \
                                      const float*, int, int, cudaStream_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cuda
