// Counter-based random numbers: every draw is a pure function of its key, never of a stream's state.
//
// That is what makes runs reproducible across thread counts, ranks and micro-batch sizes: a dropout
// mask element is hash(seed, step, global sample, site) at counter (position, channel), and a
// parameter's initial value is hash(seed, parameter name) at counter (element index). Nobody has to
// advance or save a generator state; the data position is one integer (the step).
//
// The hashing core (mix64, key, bits, uniform) and the dropout recipe below are also compiled for
// the GPU (KL_HOST_DEVICE), so the CUDA dropout kernels draw exactly the masks the CPU draws.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define KL_HOST_DEVICE __host__ __device__
#else
#define KL_HOST_DEVICE
#endif

namespace kl::rng {

// The splitmix64 finaliser: a bijection on 64 bits with full avalanche.
KL_HOST_DEVICE constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Folds several words into one key; order matters.
KL_HOST_DEVICE constexpr uint64_t key(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }
KL_HOST_DEVICE constexpr uint64_t key(uint64_t a, uint64_t b, uint64_t c) { return key(key(a, b), c); }
KL_HOST_DEVICE constexpr uint64_t key(uint64_t a, uint64_t b, uint64_t c, uint64_t d) { return key(key(a, b, c), d); }

// FNV-1a, to turn a parameter's global name into a stream id.
constexpr uint64_t hash_name(std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001B3ull;
  return h;
}

// Draw number `counter` of stream `stream_key`.
KL_HOST_DEVICE constexpr uint64_t bits(uint64_t stream_key, uint64_t counter) { return mix64(stream_key + mix64(counter)); }

// Uniform in (0, 1], 53 bits.
KL_HOST_DEVICE inline double uniform(uint64_t stream_key, uint64_t counter) {
  return (static_cast<double>(bits(stream_key, counter) >> 11) + 1.0) * 0x1.0p-53;
}

// --- dropout's masks (src/kernels/cpu/dropout.cpp and src/kernels/cuda/dropout.cu both draw here) ---
// Row `sample` (global index) of dropout `site` at `step` draws from one stream.
KL_HOST_DEVICE constexpr uint64_t dropout_stream(uint64_t seed, int64_t step, int64_t sample, uint32_t site) {
  return key(seed, static_cast<uint64_t>(step), static_cast<uint64_t>(sample), site);
}
// One 64-bit hash feeds four elements: group g holds elements 4g .. 4g + 3 of the row...
KL_HOST_DEVICE constexpr uint64_t dropout_group_bits(uint64_t stream, int64_t group) {
  return mix64(stream + static_cast<uint64_t>(group) * 0xD1B54A32D192ED03ull);
}
// ... and element e reads its 16 bits at lane e % 4 (the GPU hashes once per group, the CPU once
// per element, which vectorises). 16 bits in a uint32_t: a uint16_t made the CPU's loop 5-10% slower.
KL_HOST_DEVICE constexpr uint32_t dropout_lane(uint64_t group_bits, int64_t e) {
  return static_cast<uint32_t>(group_bits >> (16 * (e & 3))) & 0xFFFFu;
}
KL_HOST_DEVICE constexpr uint32_t dropout_draw(uint64_t stream, int64_t e) {
  return dropout_lane(dropout_group_bits(stream, e >> 2), e);
}
// Element e is kept when its draw is >= this: round(p x 65536) of the 65536 values drop.
inline uint32_t dropout_threshold(double p) { return static_cast<uint32_t>(std::lround(p * 65536.0)); }
// Drop-path: one uniform draw per row keeps the whole row or drops it.
KL_HOST_DEVICE inline bool drop_path_keeps(uint64_t stream, double p) { return uniform(stream, 0) > p; }

// Standard normal by Box-Muller over two independent draws.
inline double normal(uint64_t stream_key, uint64_t counter) {
  const double u1 = uniform(stream_key, 2 * counter);
  const double u2 = uniform(stream_key, 2 * counter + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace kl::rng
