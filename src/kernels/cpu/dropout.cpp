// Dropout with a counter-based mask. Element (position, channel) = index e of row b keeps its value
// when 16 bits drawn from hash(seed, step, global sample, site) at counter e are >= p * 65536.
// One 64-bit hash feeds four elements. Nothing depends on threads, ranks or micro-batching, and the
// backward pass regenerates the mask instead of storing it.
#include <cmath>

#include "src/kernels/cpu/ops.h"
#include "src/util/rng.h"

namespace kl::cpu {
namespace {

template <class T>
void apply_mask(T* out, const T* inp, int B, int64_t row, double p, const DropoutKey& key) {
  if (p <= 0.0) {
    if (out != inp) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < int64_t{B} * row; ++i) out[i] = inp[i];
    }
    return;
  }
  const auto threshold = static_cast<uint64_t>(std::lround(p * 65536.0));
  const T keep_scale = T(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::key(key.seed, static_cast<uint64_t>(key.step),
                                     static_cast<uint64_t>(key.first_sample + b), key.site);
    const T* x = inp + int64_t{b} * row;
    T* y = out + int64_t{b} * row;
    // Element e reads 16 bits of mix64(stream + (e / 4) x odd constant): one hash per four elements,
    // written per element so that the loop vectorises (AVX-512 has 64-bit multiplies).
#pragma omp simd
    for (int64_t e = 0; e < row; ++e) {
      const uint64_t bits = rng::mix64(stream + static_cast<uint64_t>(e >> 2) * 0xD1B54A32D192ED03ull);
      const uint64_t draw = (bits >> (16 * (e & 3))) & 0xFFFF;
      y[e] = draw >= threshold ? x[e] * keep_scale : T(0);
    }
  }
}

}  // namespace

template <class T>
void dropout_forward(T* out, const T* inp, int B, int64_t row, double p, const DropoutKey& key) {
  apply_mask(out, inp, B, row, p, key);
}

// The mask is linear and diagonal, so its backward is the same masking of the incoming gradient.
template <class T>
void dropout_backward(T* dinp, const T* dout, int B, int64_t row, double p, const DropoutKey& key) {
  apply_mask(dinp, dout, B, row, p, key);
}

// One uniform draw per sample decides its whole row: the branch is there or not.
template <class T>
void drop_path(T* x, int B, int64_t row, double p, const DropoutKey& key) {
  if (p <= 0.0) return;
  const T keep_scale = T(1.0 / (1.0 - p));
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::key(key.seed, static_cast<uint64_t>(key.step),
                                     static_cast<uint64_t>(key.first_sample + b), key.site);
    const T factor = rng::uniform(stream, 0) > p ? keep_scale : T(0);
    T* y = x + int64_t{b} * row;
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < row; ++e) y[e] *= factor;
  }
}

#define KL_INSTANTIATE(T)                                                                   \
  template void drop_path<T>(T*, int, int64_t, double, const DropoutKey&);                 \
  template void dropout_forward<T>(T*, const T*, int, int64_t, double, const DropoutKey&); \
  template void dropout_backward<T>(T*, const T*, int, int64_t, double, const DropoutKey&);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
