// Helpers for deterministic OpenMP loops: fixed, static splits of an index range.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

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

// What a kernel's per-thread scratch is for: buffers live at the same time need different uses.
enum class Scratch { kColumnSums, kAttentionTiles, kAttentionQkv, kAttentionOut, kAttentionGrad, kSoftmaxRow };

// This thread's buffer of at least n elements of T for `Use`: one per thread, element type and use,
// whatever the caller; it grows to the largest n asked and then stays, so a kernel allocates nothing
// after its first call.
template <class T, Scratch Use>
T* thread_buffer(int64_t n) {
  static thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// sums[o] += the sum over the rows n of value(n * O + o), an [N, O] matrix's column sums. The rows are
// split among the threads in fixed blocks of kSumRows, each thread walking whole rows (contiguous
// memory, which the hardware prefetches; a split by columns left GELU's backward pass waiting on
// memory); each block's sums go to a scratch row, and the blocks are then added into `sums` in order.
// So the result depends on neither the thread count nor the split, and every caller of this
// function sums alike (GELU's fused bias gradient equals linear_backward's bit for bit). `value`
// may write element (n, o) of another matrix (GELU's backward pass stores its gradient there).
template <class T, class Value>
void add_column_sums(T* sums, int64_t N, int64_t O, Value value) {
  constexpr int64_t kSumRows = 32;
  const int64_t blocks = (N + kSumRows - 1) / kSumRows;
  T* partial = thread_buffer<T, Scratch::kColumnSums>(blocks * O);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      T* acc = partial + b * O;
      const int64_t end = std::min(N, (b + 1) * kSumRows);
#pragma omp simd
      for (int64_t o = 0; o < O; ++o) acc[o] = value(b * kSumRows * O + o);
      for (int64_t n = b * kSumRows + 1; n < end; ++n) {
        const int64_t first = n * O;
#pragma omp simd
        for (int64_t o = 0; o < O; ++o) acc[o] += value(first + o);
      }
    }
#pragma omp for simd schedule(static)
    for (int64_t o = 0; o < O; ++o) {
      T sum = sums[o];
      for (int64_t b = 0; b < blocks; ++b) sum += partial[b * O + o];
      sums[o] = sum;
    }
  }
}

}  // namespace kl::cpu
