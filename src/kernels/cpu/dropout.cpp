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

// Out and In: float, double or bf16 (the arithmetic in compute_t<Out>).
template <class Out, class In>
void apply_mask(Out* out, const In* inp, int B, int64_t row, double p, const DropoutKey& key) {
  using T = compute_t<Out>;
  if (p <= 0.0) {
    if (static_cast<const void*>(out) != static_cast<const void*>(inp)) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < int64_t{B} * row; ++i) store(out[i], load(inp[i]));
    }
    return;
  }
  const uint32_t threshold = rng::dropout_threshold(p);
  const T keep_scale = T(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const In* x = inp + int64_t{b} * row;
    Out* y = out + int64_t{b} * row;
    // One hash per element rather than per four, so that the loop vectorises (AVX-512 has 64-bit
    // multiplies); the draws are the same.
#pragma omp simd
    for (int64_t e = 0; e < row; ++e) store(y[e], rng::dropout_draw(stream, e) >= threshold ? load(x[e]) * keep_scale : T(0));
  }
}

}  // namespace

template <class Out, class In>
void dropout_forward(Out* out, const In* inp, int B, int64_t row, double p, const DropoutKey& key) {
  apply_mask(out, inp, B, row, p, key);
}

// The mask is linear and diagonal, so its backward is the same masking of the incoming gradient.
template <class Out, class In>
void dropout_backward(Out* dinp, const In* dout, int B, int64_t row, double p, const DropoutKey& key) {
  apply_mask(dinp, dout, B, row, p, key);
}

// One uniform draw per sample decides its whole row: the branch is there or not. `gain` multiplies
// every kept row too (the depth parametrisation's branch multiplier); p = 0 keeps every row.
template <class A>
void drop_path(A* x, int B, int64_t row, double p, const DropoutKey& key, double gain) {
  using T = compute_t<A>;
  if (p <= 0.0 && gain == 1.0) return;
  const T keep_scale = T(gain / (1.0 - std::max(p, 0.0)));
  for (int b = 0; b < B; ++b) {
    const uint64_t stream = rng::dropout_stream(key.seed, key.step, key.first_sample + b, key.site);
    const T factor = p <= 0.0 || rng::drop_path_keeps(stream, p) ? keep_scale : T(0);
    A* y = x + int64_t{b} * row;
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < row; ++e) store(y[e], load(y[e]) * factor);
  }
}

#define KL_INSTANTIATE(Out, In)                                                                         \
  template void dropout_forward<Out, In>(Out*, const In*, int, int64_t, double, const DropoutKey&); \
  template void dropout_backward<Out, In>(Out*, const In*, int, int64_t, double, const DropoutKey&);
KL_INSTANTIATE(float, float)
KL_INSTANTIATE(double, double)
KL_INSTANTIATE(bf16, bf16)   // a bf16 branch
KL_INSTANTIATE(bf16, float)  // the stream's gradient into a bf16 branch's
#undef KL_INSTANTIATE
template void drop_path<float>(float*, int, int64_t, double, const DropoutKey&, double);
template void drop_path<double>(double*, int, int64_t, double, const DropoutKey&, double);
template void drop_path<bf16>(bf16*, int, int64_t, double, const DropoutKey&, double);

}  // namespace kl::cpu
