// Dropout with the CPU's counter-based mask (src/kernels/cpu/dropout.cpp), bit for bit: element e
// of row b keeps its value when 16 bits of mix64(stream + (e / 4) x odd constant) are >= p x 65536,
// stream = key(seed, step, global sample, site). Same hash (src/util/rng.h, compiled for the
// device), same threshold, same fp32 scale: in fp32 the outputs equal the CPU's exactly.
// One thread per four elements (one hash each).
#include <cmath>

#include "src/kernels/cuda/common.cuh"
#include "src/util/rng.h"

namespace kl::cuda {
namespace {

template <class In, class Out>
__global__ void dropout_kernel(Out* out, const In* inp, int B, int64_t row, uint64_t threshold, float keep_scale,
                               cpu::DropoutKey key) {
  const int64_t groups = (row + 3) / 4;  // per row
  const int64_t total = int64_t{B} * groups;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / groups, group = i % groups;
    const uint64_t stream = rng::key(key.seed, static_cast<uint64_t>(key.step),
                                     static_cast<uint64_t>(key.first_sample + b), key.site);
    const uint64_t bits = rng::mix64(stream + static_cast<uint64_t>(group) * 0xD1B54A32D192ED03ull);
    const int64_t first = b * row + group * 4;
    const int count = static_cast<int>(row - group * 4 < 4 ? row - group * 4 : 4);
    for (int j = 0; j < count; ++j) {
      const uint64_t draw = (bits >> (16 * j)) & 0xFFFF;
      out[first + j] = from_float<Out>(draw >= threshold ? to_float(inp[first + j]) * keep_scale : 0.0f);
    }
  }
}

template <class In, class Out>
__global__ void copy_kernel(Out* out, const In* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<Out>(to_float(inp[i]));
  }
}

}  // namespace

template <class In, class Out>
void dropout(Out* out, const In* inp, int B, int64_t row, double p, const cpu::DropoutKey& key, cudaStream_t stream) {
  const int64_t n = int64_t{B} * row;
  if (n <= 0) return;
  if (p <= 0.0) {
    if (static_cast<const void*>(out) == static_cast<const void*>(inp)) return;
    copy_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, inp, n);
    KL_CHECK_LAUNCH();
    return;
  }
  const auto threshold = static_cast<uint64_t>(std::lround(p * 65536.0));
  const auto keep_scale = static_cast<float>(1.0 / (1.0 - p));  // the CPU's T(1.0 / (1.0 - p))
  dropout_kernel<<<grid_for(int64_t{B} * ((row + 3) / 4), 256), 256, 0, stream>>>(out, inp, B, row, threshold,
                                                                                   keep_scale, key);
  KL_CHECK_LAUNCH();
}

template void dropout<float, float>(float*, const float*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);
template void dropout<bf16, bf16>(bf16*, const bf16*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);
template void dropout<float, bf16>(bf16*, const float*, int, int64_t, double, const cpu::DropoutKey&, cudaStream_t);

}  // namespace kl::cuda
