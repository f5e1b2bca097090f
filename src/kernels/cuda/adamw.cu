// AdamW on fp32 master weights (PyTorch's formulation, as src/kernels/cpu/adamw.cpp), the
// deterministic global-norm reduction and the clipping scale.
#include <cmath>

#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

template <class T>
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, T* copy, int64_t n, float b1,
                             float b2, float e, float step_size, float inv_sqrt_bias2, float decay) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float g = grad[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    const float p = param[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bias2 + e);
    m[i] = mi;
    v[i] = vi;
    param[i] = p;
    if (copy) copy[i] = from_float<T>(p);
  }
}

// Stage 1: block k of kSumSquaresPartials sums a fixed, strided share in double.
template <class T>
__global__ void sum_squares_partial_kernel(double* partials, const T* x, int64_t n) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const double xi = to_float(x[i]);
    s += xi * xi;
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Stage 2: one block adds the partial sums.
__global__ void sum_partials_kernel(double* out, const double* partials, int count) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

__global__ void scale_kernel(float* x, int64_t n, float factor) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    x[i] *= factor;
  }
}

}  // namespace

template <class T>
void adamw_update(float* param, const float* grad, float* m, float* v, T* copy, int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step, cudaStream_t stream) {
  if (n <= 0) return;
  // The scalars exactly as the CPU op computes them (in double, then rounded to float).
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  adamw_kernel<<<grid_for(n, 256), 256, 0, stream>>>(
      param, grad, m, v, copy, n, float(beta1), float(beta2), float(eps), float(lr / bias1),
      float(1.0 / std::sqrt(bias2)), float(1.0 - lr * weight_decay));
  KL_CHECK_LAUNCH();
}

template <class T>
void sum_squares(double* out, const T* x, int64_t n, double* partials, cudaStream_t stream) {
  sum_squares_partial_kernel<<<kSumSquaresPartials, 256, 0, stream>>>(partials, x, n);
  KL_CHECK_LAUNCH();
  sum_partials_kernel<<<1, 512, 0, stream>>>(out, partials, kSumSquaresPartials);
  KL_CHECK_LAUNCH();
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, factor);
  KL_CHECK_LAUNCH();
}

template void adamw_update<float>(float*, const float*, float*, float*, float*, int64_t, double, double, double,
                                  double, double, int64_t, cudaStream_t);
template void adamw_update<bf16>(float*, const float*, float*, float*, bf16*, int64_t, double, double, double, double,
                                 double, int64_t, cudaStream_t);
template void sum_squares<float>(double*, const float*, int64_t, double*, cudaStream_t);
template void sum_squares<bf16>(double*, const bf16*, int64_t, double*, cudaStream_t);

}  // namespace kl::cuda
