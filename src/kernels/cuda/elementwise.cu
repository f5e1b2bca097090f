// Conversions, the residual add and column sums: the small kernels the others lean on.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

template <class From, class To>
__global__ void convert_kernel(To* out, const From* in, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<To>(to_float(in[i]));
  }
}

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
  }
}

template <class T>
struct ReadMatrix {
  const T* in;
  int cols;
  __device__ float operator()(int r, int c) const { return to_float(in[int64_t{r} * cols + c]); }
};

}  // namespace

template <class From, class To>
void convert(To* out, const From* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, in, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void add(T* out, const T* a, const T* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, a, b, n);
  KL_CHECK_LAUNCH();
}

template <class T>
void column_sums_accumulate(float* out, const T* in, int rows, int cols, cudaStream_t stream) {
  launch_column_sums(out, rows, cols, ReadMatrix<T>{in, cols}, stream);
}

template void convert<float, bf16>(bf16*, const float*, int64_t, cudaStream_t);
template void convert<bf16, float>(float*, const bf16*, int64_t, cudaStream_t);
template void convert<float, float>(float*, const float*, int64_t, cudaStream_t);
template void convert<bf16, bf16>(bf16*, const bf16*, int64_t, cudaStream_t);
template void add<float>(float*, const float*, const float*, int64_t, cudaStream_t);
template void add<bf16>(bf16*, const bf16*, const bf16*, int64_t, cudaStream_t);
template void column_sums_accumulate<float>(float*, const float*, int, int, cudaStream_t);
template void column_sums_accumulate<bf16>(float*, const bf16*, int, int, cudaStream_t);

}  // namespace kl::cuda
