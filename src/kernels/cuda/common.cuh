// Device helpers shared by the kernels of this folder (nvcc only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "src/check/cuda.h"
#include "src/kernels/cuda/ops.h"

namespace kl::cuda {

// Loads and stores through fp32, whatever the storage type.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) { return __float2bfloat16(x); }  // round to nearest even

template <class V>
__device__ __forceinline__ V warp_sum(V x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, offset));
  return x;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024), the same value returned
// to every thread; `shared` holds 32 values. The order is fixed: deterministic.
template <class V>
__device__ V block_sum(V x, V* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_sum(x);
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  V total = lane < warps ? shared[lane] : V(0);
  return warp_sum(total);
}
__device__ inline float block_max(float x, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  float total = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(total);
}

// Column sums of a [rows, cols] matrix of values value(r, c), added to out[c]: blocks of 32 x 32
// threads, each block owning 32 columns; thread (x, y) sums rows y, y + 32, ... of column x, then the
// 32 partial sums of a column are added in order of y. Coalesced, no atomics, deterministic.
inline constexpr int kColumnTile = 32;
template <class F>
__global__ void column_sums_kernel(float* out, int rows, int cols, F value) {
  __shared__ float partial[kColumnTile][kColumnTile + 1];
  const int c = blockIdx.x * kColumnTile + threadIdx.x;
  float sum = 0.0f;
  if (c < cols) {
    for (int r = threadIdx.y; r < rows; r += kColumnTile) sum += value(r, c);
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int y = 0; y < kColumnTile; ++y) total += partial[y][threadIdx.x];
    out[c] += total;
  }
}
template <class F>
void launch_column_sums(float* out, int rows, int cols, F value, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kColumnTile, kColumnTile);
  column_sums_kernel<<<(cols + kColumnTile - 1) / kColumnTile, block, 0, stream>>>(out, rows, cols, value);
  KL_CHECK_LAUNCH();
}

// A 1-D grid covering n elements with `threads` per block, capped (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 32 ? 65535 * 32 : blocks));
}

}  // namespace kl::cuda
