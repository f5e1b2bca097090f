// bfloat16 on the CPU: the upper 16 bits of an IEEE float (8 exponent bits, 7 stored mantissa
// bits). The CPU's bf16 activations (CpuBackend<float, cpu::bf16>, models/backend.h) are stored in
// it; every kernel reads them into float, computes in float, and rounds what it writes.
//
// Conversions are implicit both ways, as CUDA's __nv_bfloat16 is on the host, so that a kernel
// templated on its element types reads the same for float and bf16. Rounding is to nearest even; a
// NaN stays a NaN. Both conversions are a few integer operations that GCC vectorises.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace kl::cpu {

// Nearest even. A NaN stays a NaN (quieted, sign kept): rounding its bits could carry into the
// exponent and make it +-0 (0xffffffff) or infinity (0x7f800001). A select, not a branch, so loops
// that round stay vectorised.
inline uint16_t to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const auto rounded = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  const auto quiet_nan = static_cast<uint16_t>((u >> 16) | 0x0040u);
  return (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
}

inline float from_bf16_bits(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  template <class X, class = std::enable_if_t<std::is_arithmetic_v<X>>>
  bf16(X x) : bits(to_bf16_bits(static_cast<float>(x))) {}  // NOLINT: implicit, like __nv_bfloat16
  operator float() const { return from_bf16_bits(bits); }   // NOLINT
};
static_assert(sizeof(bf16) == 2 && std::is_trivially_copyable_v<bf16>);

// An element of any type the kernels take, read as its compute type and written from it. For bf16
// these go through the bits: GCC vectorises them inside `omp simd` loops, where it leaves loops
// over the struct's own conversions scalar.
inline float load(const bf16& x) { return from_bf16_bits(x.bits); }
inline float load(float x) { return x; }
inline double load(double x) { return x; }
inline void store(bf16& to, float x) { to.bits = to_bf16_bits(x); }
inline void store(float& to, float x) { to = x; }
inline void store(double& to, double x) { to = x; }

// x rounded to bf16 (nearest even) and back to float.
inline float round_to_bf16(float x) { return from_bf16_bits(to_bf16_bits(x)); }

}  // namespace kl::cpu
