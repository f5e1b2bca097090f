// Dropout with a counter-based mask. Element (position, channel) = index e of row b keeps its value
// when 16 bits drawn from hash(seed, step, global sample, site) at counter e are >= p * 65536; the
// recipe is src/util/rng.h's dropout_draw, which the GPU draws with too. One 64-bit hash feeds four
// elements. Nothing depends on threads, ranks or micro-batching, and the backward pass regenerates
// the mask instead of storing it.
#include <algorithm>
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
  const uint32_t threshold = rng::dropout_threshold(p);
  const T keep_scale = T(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const T* x = inp + int64_t{b} * row;
    T* y = out + int64_t{b} * row;
    // One hash per element rather than per four, so that the loop vectorises (AVX-512 has 64-bit
    // multiplies); the draws are the same.
#pragma omp simd
    for (int64_t e = 0; e < row; ++e) y[e] = rng::dropout_draw(stream, e) >= threshold ? x[e] * keep_scale : T(0);
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

// One uniform draw per sample decides its whole row: the branch is there or not. `gain` multiplies
// every kept row too (the depth parametrisation's branch multiplier); p = 0 keeps every row.
template <class T>
void drop_path(T* x, int B, int64_t row, double p, const DropoutKey& key, double gain) {
  if (p <= 0.0 && gain == 1.0) return;
  const T keep_scale = T(gain / (1.0 - std::max(p, 0.0)));
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const T factor = p <= 0.0 || rng::drop_path_keeps(stream, p) ? keep_scale : T(0);
    T* y = x + int64_t{b} * row;
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < row; ++e) y[e] *= factor;
  }
}

#define KL_INSTANTIATE(T)                                                                   \
  template void drop_path<T>(T*, int, int64_t, double, const DropoutKey&, double);         \
  template void dropout_forward<T>(T*, const T*, int, int64_t, double, const DropoutKey&); \
  template void dropout_backward<T>(T*, const T*, int, int64_t, double, const DropoutKey&);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
