// The joins of a branch with the residual stream (src/kernels/cpu/residual.cpp on the GPU). The
// stream and its gradient are fp32; the branch, its saved copy (`kept`), the scales and the highway
// gate are T. Arithmetic in fp32; the one reduction (scale_grad) is a fixed-order column sum.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

// One scalar (rezero) or one per channel (layerscale).
__device__ __forceinline__ int64_t scale_index(int scale_size, int64_t i, int C) { return scale_size == 1 ? 0 : i % C; }

template <class T>
__global__ void add_scaled_kernel(float* out, float alpha, const float* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = alpha * a[i] + to_float(b[i]);
  }
}

template <class T>
__global__ void scale_by_kernel(T* out, const T* scale, int scale_size, const float* in, int64_t n, int C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<T>(to_float(scale[scale_index(scale_size, i, C)]) * in[i]);
  }
}

template <class T>
__global__ void scaled_join_kernel(float* v, const float* u, const T* scale, int scale_size, const T* branch,
                                   int64_t n, int C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    v[i] = u[i] + to_float(scale[scale_index(scale_size, i, C)]) * to_float(branch[i]);
  }
}

template <class T>
struct ScaleGradTerm {  // dres * kept
  const float* dres;
  const T* kept;
  int cols;
  __device__ float operator()(int r, int c) const {
    const int64_t i = int64_t{r} * cols + c;
    return dres[i] * to_float(kept[i]);
  }
};

// The rezero scalar: *grad += the C column sums, one block, a fixed order.
__global__ void add_sum_kernel(float* grad, const float* temp, int C) {
  __shared__ float shared[32];
  float s = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += temp[c];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *grad += s;
}

// The gate is stored in T and the backward pass reads it back, so the forward pass mixes with the
// stored value: both passes see the same g.
template <class T>
__global__ void highway_join_kernel(T* gate, float* v, const T* branch, const float* u, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const T stored = from_float<T>(1.0f / (1.0f + expf(-to_float(gate[i]))));
    const float g = to_float(stored);
    gate[i] = stored;
    v[i] = g * to_float(branch[i]) + (1.0f - g) * u[i];
  }
}

template <class T>
__global__ void highway_join_backward_kernel(T* dbranch, T* dz, float* dres, const T* gate, const T* kept,
                                             const float* u, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float g = to_float(gate[i]), dv = dres[i];
    dbranch[i] = from_float<T>(g * dv);
    dz[i] = from_float<T>((to_float(kept[i]) - u[i]) * dv * g * (1.0f - g));
    dres[i] = (1.0f - g) * dv;
  }
}

}  // namespace

template <class T>
void add_scaled(float* out, float alpha, const float* a, const T* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_scaled_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, alpha, a, b, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void scale_by(T* out, const T* scale, int scale_size, const float* in, int64_t n, int C, cudaStream_t stream) {
  if (n <= 0) return;
  scale_by_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, scale, scale_size, in, n, C);
  KL_CHECK_LAUNCH();
}

template <class T>
void scaled_join(float* v, const float* u, const T* scale, int scale_size, const T* branch, int64_t n, int C,
                 cudaStream_t stream) {
  if (n <= 0) return;
  scaled_join_kernel<<<grid_for(n, 256), 256, 0, stream>>>(v, u, scale, scale_size, branch, n, C);
  KL_CHECK_LAUNCH();
}

template <class T>
void scale_grad(float* grad, int scale_size, const float* dres, const T* kept, int N, int C, float* temp,
                cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const ScaleGradTerm<T> term{dres, kept, C};
  if (scale_size != 1) {  // layerscale: the column sums are the gradient
    launch_column_sums(grad, N, C, term, stream);
    return;
  }
  KL_CHECK_CUDA(cudaMemsetAsync(temp, 0, sizeof(float) * static_cast<size_t>(C), stream));
  launch_column_sums(temp, N, C, term, stream);
  add_sum_kernel<<<1, 256, 0, stream>>>(grad, temp, C);
  KL_CHECK_LAUNCH();
}

template <class T>
void highway_join(T* gate, float* v, const T* branch, const float* u, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  highway_join_kernel<<<grid_for(n, 256), 256, 0, stream>>>(gate, v, branch, u, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void highway_join_backward(T* dbranch, T* dz, float* dres, const T* gate, const T* kept, const float* u, int64_t n,
                           cudaStream_t stream) {
  if (n <= 0) return;
  highway_join_backward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dbranch, dz, dres, gate, kept, u, n);
  KL_CHECK_LAUNCH();
}

#define KL_INSTANTIATE(T)                                                                                       \
  template void add_scaled<T>(float*, float, const float*, const T*, int64_t, cudaStream_t);                    \
  template void scale_by<T>(T*, const T*, int, const float*, int64_t, int, cudaStream_t);                       \
  template void scaled_join<T>(float*, const float*, const T*, int, const T*, int64_t, int, cudaStream_t);      \
  template void scale_grad<T>(float*, int, const float*, const T*, int, int, float*, cudaStream_t);              \
  template void highway_join<T>(T*, float*, const T*, const float*, int64_t, cudaStream_t);                     \
  template void highway_join_backward<T>(T*, T*, float*, const T*, const T*, const float*, int64_t, cudaStream_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cuda
