// GELU in the exact erf form, PyTorch's default: gelu(x) = x Phi(x), gelu'(x) = Phi(x) + x phi(x).
//
// Not in the cuBLASLt epilogue: cuBLASLt's GELU epilogues compute the tanh approximation, which
// differs from the model's erf form by up to ~1e-3 (more than the fp32 tolerance against the CPU
// and PyTorch). This separate elementwise pass is memory-bound and small beside the two products.
// The backward pass sums the fc layer's bias gradient as it goes (gelu_backward_bias), through the
// same deterministic column-sum kernel that linear_backward's bias gradient uses.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * kInvSqrt2)); }
__device__ __forceinline__ float gelu_slope(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
  return cdf + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<T>(gelu(to_float(inp[i])));
  }
}

template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    dinp[i] = from_float<T>(to_float(dout[i]) * gelu_slope(to_float(inp[i])));
  }
}

// GELU's backward pass as the value the column sums read: each (r, c) is visited once, writes
// dpre there and returns it as stored (bf16-rounded under bf16, the value the separate bias sum of
// linear_backward would have read).
template <class T>
struct GeluGradient {
  T* dpre;
  const T* pre;
  const T* dout;
  int cols;
  __device__ float operator()(int r, int c) const {
    const int64_t i = int64_t{r} * cols + c;
    const T d = from_float<T>(to_float(dout[i]) * gelu_slope(to_float(pre[i])));
    dpre[i] = d;
    return to_float(d);
  }
};

}  // namespace

template <class T>
void gelu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_forward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, inp, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dinp, inp, dout, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void gelu_backward_bias(T* dpre, float* dbias, const T* pre, const T* dout, int N, int O, cudaStream_t stream) {
  if (!dbias) {
    gelu_backward(dpre, pre, dout, int64_t{N} * O, stream);
    return;
  }
  launch_column_sums(dbias, N, O, GeluGradient<T>{dpre, pre, dout, O}, stream);
}

template void gelu_forward<float>(float*, const float*, int64_t, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, int64_t, cudaStream_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, cudaStream_t);
template void gelu_backward<bf16>(bf16*, const bf16*, const bf16*, int64_t, cudaStream_t);
template void gelu_backward_bias<float>(float*, float*, const float*, const float*, int, int, cudaStream_t);
template void gelu_backward_bias<bf16>(bf16*, float*, const bf16*, const bf16*, int, int, cudaStream_t);

}  // namespace kl::cuda
