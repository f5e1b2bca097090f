// exp for the element-wise kernels' float paths: branch-free, so that the loops calling it
// vectorise (libm's scalar expf took a tenth of a training step in GELU, and as much again in the
// attention's softmax). Used by gelu.cpp and attention.cpp.
#pragma once

#include <bit>
#include <cstdint>

namespace kl::cpu {

// exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-6 Taylor polynomial
// (relative error below 2e-10 before rounding), 2^n put together in the exponent bits.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;  // exp(-87) = 1.6e-38 is still a normal float
  const float magic = 12582912.0f;  // 1.5 x 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f + r * (8.3333338e-3f + r * 1.3888889e-3f)))));
  const auto scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return p * scale;
}

}  // namespace kl::cpu
