// Helpers for deterministic OpenMP loops: fixed, static splits of an index range.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace kl::cpu {

// The [begin, end) share of `n` items for thread `thread` of `threads` (static, contiguous).
struct Range {
  int64_t begin, end;
};
inline Range share(int64_t n, int thread, int threads) {
  const int64_t base = n / threads, extra = n % threads;
  const int64_t begin = thread * base + std::min<int64_t>(thread, extra);
  return {begin, begin + base + (thread < extra ? 1 : 0)};
}

}  // namespace kl::cpu
