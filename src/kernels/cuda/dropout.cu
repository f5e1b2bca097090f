// Dropout and drop-path with the CPU's counter-based draws (src/kernels/cpu/dropout.cpp), bit for
// bit: both take the recipe from src/util/rng.h, compiled for the device (dropout_stream; the two
// halves of dropout_draw, dropout_group_bits and dropout_lane; drop_path_keeps). Same threshold and
// the same fp32 scale: in fp32 the outputs equal the CPU's exactly; bf16 rounds the fp32 product once.
//
// Grid: blockIdx.y walks the rows (samples), so a thread hashes its row's stream once; along a row,
// dropout gives each thread four elements (one hash), drop-path one row-wide decision.
#include "src/kernels/cuda/common.cuh"
#include "src/util/rng.h"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;

template <class In, class Out>
__global__ void dropout_kernel(Out* out, const In* inp, int B, int64_t row, uint32_t threshold, float keep_scale,
                               cpu::DropoutKey key) {
  const int64_t groups = (row + 3) / 4;
  for (int b = blockIdx.y; b < B; b += gridDim.y) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const In* x = inp + int64_t{b} * row;
    Out* y = out + int64_t{b} * row;
    for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < groups; g += int64_t{gridDim.x} * blockDim.x) {
      const uint64_t bits = rng::dropout_group_bits(stream, g);
      const int64_t first = 4 * g, last = first + 4 < row ? first + 4 : row;
      for (int64_t e = first; e < last; ++e) {
        y[e] = from_float<Out>(rng::dropout_lane(bits, e) >= threshold ? to_float(x[e]) * keep_scale : 0.0f);
      }
    }
  }
}

template <class In, class Out>
__global__ void copy_kernel(Out* out, const In* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<Out>(to_float(inp[i]));
  }
}

// A multiply, not a store of zeros, as the CPU does: a dropped row keeps the NaN of a non-finite value.
template <class T>
__global__ void drop_path_kernel(T* x, int B, int64_t row, double p, float keep_scale, cpu::DropoutKey key) {
  for (int b = blockIdx.y; b < B; b += gridDim.y) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const float factor = p <= 0.0 || rng::drop_path_keeps(stream, p) ? keep_scale : 0.0f;
    T* y = x + int64_t{b} * row;
    for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < row; e += int64_t{gridDim.x} * blockDim.x) {
      y[e] = from_float<T>(to_float(y[e]) * factor);
    }
  }
}

// Blocks along a row for `per_row` work items, times the rows (at most 65535 in y; the kernels
// stride over more).
dim3 row_grid(int B, int64_t per_row) {
  const int64_t along = (per_row + kThreads - 1) / kThreads;
  const int64_t rows = B < 65535 ? B : 65535;
  // Enough blocks to fill the GPU, not one per element of a long row: the loops stride.
  const int64_t cap = (int64_t{1} << 16) / rows + 1;
  return dim3(static_cast<unsigned>(along < 1 ? 1 : along > cap ? cap : along), static_cast<unsigned>(rows));
}

}  // namespace

template <class In, class Out>
void dropout(Out* out, const In* inp, int B, int64_t row, double p, const cpu::DropoutKey& key, cudaStream_t stream) {
  const int64_t n = int64_t{B} * row;
  if (n <= 0) return;
  if (p <= 0.0) {
    if (static_cast<const void*>(out) == static_cast<const void*>(inp)) return;
    copy_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(out, inp, n);
    KL_CHECK_LAUNCH();
    return;
  }
  const auto keep_scale = static_cast<float>(1.0 / (1.0 - p));  // the CPU's T(1.0 / (1.0 - p))
  dropout_kernel<<<row_grid(B, (row + 3) / 4), kThreads, 0, stream>>>(out, inp, B, row, rng::dropout_threshold(p),
                                                                     keep_scale, key);
  KL_CHECK_LAUNCH();
}

template <class T>
void drop_path(T* x, int B, int64_t row, double p, const cpu::DropoutKey& key, cudaStream_t stream, double gain) {
  if ((p <= 0.0 && gain == 1.0) || int64_t{B} * row <= 0) return;
  // The CPU's T(gain / (1.0 - p)).
  const auto keep_scale = static_cast<float>(gain / (1.0 - (p > 0.0 ? p : 0.0)));
  drop_path_kernel<<<row_grid(B, row), kThreads, 0, stream>>>(x, B, row, p, keep_scale, key);
  KL_CHECK_LAUNCH();
}

template void dropout<float, float>(float*, const float*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);
template void dropout<bf16, bf16>(bf16*, const bf16*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);
template void dropout<float, bf16>(bf16*, const float*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);
template void drop_path<float>(float*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t, double);
template void drop_path<bf16>(bf16*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t, double);

}  // namespace kl::cuda
