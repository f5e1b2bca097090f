// GELU in the exact erf form, PyTorch's default: gelu(x) = x Phi(x), gelu'(x) = Phi(x) + x phi(x).
//
// Not in the cuBLASLt epilogue: cuBLASLt's GELU epilogues compute the tanh approximation, which
// differs from the model's erf form by up to ~1e-3 (more than the fp32 tolerance against the CPU
// and PyTorch). This separate elementwise pass is memory-bound and small beside the two products.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float x = to_float(inp[i]);
    out[i] = from_float<T>(0.5f * x * (1.0f + erff(x * kInvSqrt2)));
  }
}

template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float x = to_float(inp[i]);
    const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
    dinp[i] = from_float<T>(to_float(dout[i]) * (cdf + x * kInvSqrt2Pi * expf(-0.5f * x * x)));
  }
}

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

template void gelu_forward<float>(float*, const float*, int64_t, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, int64_t, cudaStream_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, cudaStream_t);
template void gelu_backward<bf16>(bf16*, const bf16*, const bf16*, int64_t, cudaStream_t);

}  // namespace kl::cuda
