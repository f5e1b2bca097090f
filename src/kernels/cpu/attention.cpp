// Causal multi-head attention, flash-style: per (batch row, head), S = Q K^T / sqrt(hs),
// P = softmax over the positions j <= i, out = P V, without ever holding a T x T matrix.
//
// Forward: per query tile, the key tiles up to the diagonal are visited in order with a running
// row maximum m and sum l (online softmax): the output rows are rescaled by exp(m_old - m_new)
// before each tile's P V is added, and divided by l at the end. Only the output and the per-row
// log-sum-exp lse = m + log l (B x NH x T) are kept for the backward pass.
//
// Backward by recomputation: D_i = rowsum(dO_i * O_i); per key tile, per query tile at or below
// it, P = exp(S - lse) is rebuilt from Q and K, then dV += P^T dO, dP = dO V^T,
// dS = P (dP - D), dQ += dS K / sqrt(hs), dK += dS^T Q / sqrt(hs).
//
// Each (b, h) pair is one task, its tiles visited in a fixed order by one thread, so the sums are
// deterministic for any thread count. The products inside run single-threaded (oneDNN and
// OpenBLAS's OpenMP build do that inside a parallel region). Tile scratch is per thread and grows
// once; a step allocates nothing after the first.
//
// Tile shapes: the forward pass reads a wide key tile (kForwardKeys) for few queries, so that at
// T = 128 each query tile takes one product, as the full-matrix kernel did; the backward pass reads
// a narrow key tile against many queries (kBackwardQueries), the shape of its dK, dV sums. Only the
// diagonal tile's masked triangle is computed and thrown away.
//
// bf16 activations (attention_*<bf16>): each head's q, k, v (and dO, O) are read into per-thread
// float tiles [T, 3 hs] (and [T, hs]), the float kernel runs on them (forward_head, backward_head),
// and what it writes is rounded once: the output, and dq, dk, dv summed in a float tile first. The
// log-sum-exp stays float.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "src/kernels/cpu/fast_exp.h"
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {
namespace {

constexpr int kForwardQueries = 32, kForwardKeys = 128;  // kForwardKeys a multiple of kForwardQueries
constexpr int kBackwardQueries = 128, kBackwardKeys = 32;

// One (b, h) pair's operands inside the fused qkv [B, T, 3C] and the [B, T, C] output.
template <class Q>
struct Head {
  Q* q;  // k = q + C, v = q + 2C, leading dimension 3C
  int64_t out_offset;
  int64_t lse_offset;
};

template <class Q>
Head<Q> head(Q* qkv, int bh, int T_, int C, int NH) {
  const int b = bh / NH, h = bh % NH, hs = C / NH;
  return {qkv + int64_t{b} * T_ * 3 * C + h * hs, int64_t{b} * T_ * C + h * hs, int64_t{bh} * T_};
}

// exp of a score minus its row's maximum or log-sum-exp (<= 0 up to rounding): the vectorisable
// float exp in training (the softmax's exps were the kernel's largest cost after its products),
// the C library's in the fp64 tests.
inline float exp_shifted(float x) { return exp_nonpositive(x); }
inline double exp_shifted(double x) { return std::exp(x); }

// One (b, h) pair's operands: q [T, hs] with leading dimension ld, k = q + kv, v = q + 2 kv (the
// same leading dimension); y, and dy in the backward pass, [T, hs] with leading dimension ldy.
template <class T>
struct HeadView {
  const T* q;
  int64_t ld, kv;
  int64_t ldy;
  int T_, hs;
};

template <class T>
void forward_head(const HeadView<T>& x, T* y_all, T* lse) {
  const int T_ = x.T_, hs = x.hs;
  const int64_t ld = x.ld, ldy = x.ldy;
  const T scale = T(1) / std::sqrt(T(hs));
  T* s = thread_buffer<T, Scratch::kAttentionTiles>(int64_t{kForwardQueries} * (kForwardKeys + 2));
  T* row_max = s + kForwardQueries * kForwardKeys;
  T* row_sum = row_max + kForwardQueries;
  const T* k = x.q + x.kv;
  const T* v = x.q + 2 * x.kv;
  for (int r0 = 0; r0 < T_; r0 += kForwardQueries) {
    const int r1 = std::min(r0 + kForwardQueries, T_), rows = r1 - r0;
    T* y = y_all + int64_t{r0} * ldy;
    for (int c0 = 0; c0 < r1; c0 += kForwardKeys) {  // c0 <= r0: the tiles nest
      const int cols = std::min(c0 + kForwardKeys, r1) - c0;
      gemm<T>(false, true, rows, cols, hs, scale, x.q + int64_t{r0} * ld, ld, k + int64_t{c0} * ld, ld, T(0), s,
              kForwardKeys);
      for (int ii = 0; ii < rows; ++ii) {
        T* row = s + ii * kForwardKeys;
        const int valid = std::min(cols, r0 + ii + 1 - c0);  // keys j <= i
        T max = row[0];
        for (int j = 1; j < valid; ++j) max = row[j] > max ? row[j] : max;
        if (c0 > 0) max = std::max(max, row_max[ii]);
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < valid; ++j) {
          row[j] = exp_shifted(row[j] - max);
          sum += row[j];
        }
        for (int j = valid; j < cols; ++j) row[j] = 0;
        if (c0 > 0) {  // rescale what the earlier tiles summed to the new maximum
          const T correction = exp_shifted(row_max[ii] - max);
          row_sum[ii] = row_sum[ii] * correction + sum;
          T* yrow = y + int64_t{ii} * ldy;
          for (int d = 0; d < hs; ++d) yrow[d] *= correction;
        } else {
          row_sum[ii] = sum;
        }
        row_max[ii] = max;
      }
      gemm<T>(false, false, rows, hs, cols, T(1), s, kForwardKeys, v + int64_t{c0} * ld, ld, c0 > 0 ? T(1) : T(0),
              y, static_cast<int>(ldy));
    }
    for (int ii = 0; ii < rows; ++ii) {
      const T inv = T(1) / row_sum[ii];
      T* yrow = y + int64_t{ii} * ldy;
      for (int d = 0; d < hs; ++d) yrow[d] *= inv;
      lse[r0 + ii] = row_max[ii] + std::log(row_sum[ii]);
    }
  }
}

// dq (dk = dq + kv, dv = dq + 2 kv) laid out as x.q is, assigned.
template <class T>
void backward_head(const HeadView<T>& x, const T* dy, const T* y, const T* row_lse, T* dq) {
  const int T_ = x.T_, hs = x.hs;
  const int64_t ld = x.ld, ldy = x.ldy;
  const T scale = T(1) / std::sqrt(T(hs));
  T* p = thread_buffer<T, Scratch::kAttentionTiles>(int64_t{2} * kBackwardQueries * kBackwardKeys + T_);
  T* ds = p + kBackwardQueries * kBackwardKeys;
  T* delta = ds + kBackwardQueries * kBackwardKeys;  // D_i = rowsum(dO_i * O_i)
  const T* k = x.q + x.kv;
  const T* v = x.q + 2 * x.kv;
  T* dk = dq + x.kv;
  T* dv = dq + 2 * x.kv;
  for (int i = 0; i < T_; ++i) {
    T dot = 0;
    for (int d = 0; d < hs; ++d) dot += dy[int64_t{i} * ldy + d] * y[int64_t{i} * ldy + d];
    delta[i] = dot;
    for (T* g : {dq, dk, dv}) std::fill_n(g + int64_t{i} * ld, hs, T(0));
  }
  for (int c0 = 0; c0 < T_; c0 += kBackwardKeys) {
    const int cols = std::min(c0 + kBackwardKeys, T_) - c0;
    for (int r0 = c0; r0 < T_; r0 += kBackwardQueries) {  // the queries that see keys [c0, c0 + cols)
      const int rows = std::min(r0 + kBackwardQueries, T_) - r0;
      gemm<T>(false, true, rows, cols, hs, scale, x.q + int64_t{r0} * ld, ld, k + int64_t{c0} * ld, ld, T(0), p,
              kBackwardKeys);
      gemm<T>(false, true, rows, cols, hs, T(1), dy + int64_t{r0} * ldy, static_cast<int>(ldy), v + int64_t{c0} * ld,
              ld, T(0), ds, kBackwardKeys);
      for (int ii = 0; ii < rows; ++ii) {
        const int i = r0 + ii, valid = std::min(cols, i + 1 - c0);
        T* prow = p + ii * kBackwardKeys;
        T* dsrow = ds + ii * kBackwardKeys;
        const T lse_i = row_lse[i], delta_i = delta[i];
#pragma omp simd
        for (int j = 0; j < valid; ++j) {
          prow[j] = exp_shifted(prow[j] - lse_i);
          dsrow[j] = prow[j] * (dsrow[j] - delta_i);
        }
        for (int j = valid; j < cols; ++j) prow[j] = dsrow[j] = 0;
      }
      gemm<T>(true, false, cols, hs, rows, T(1), p, kBackwardKeys, dy + int64_t{r0} * ldy, static_cast<int>(ldy), T(1),
              dv + int64_t{c0} * ld, ld);
      gemm<T>(true, false, cols, hs, rows, scale, ds, kBackwardKeys, x.q + int64_t{r0} * ld, ld, T(1),
              dk + int64_t{c0} * ld, ld);
      gemm<T>(false, false, rows, hs, cols, scale, ds, kBackwardKeys, k + int64_t{c0} * ld, ld, T(1),
              dq + int64_t{r0} * ld, ld);
    }
  }
}

// rows x cols of `from` (leading dimension ld_from) into `to` (ld_to), converted element by element.
template <class To, class From>
void copy_tile(To* to, int64_t ld_to, const From* from, int64_t ld_from, int rows, int cols) {
  for (int i = 0; i < rows; ++i) {
    for (int d = 0; d < cols; ++d) store(to[i * ld_to + d], load(from[i * ld_from + d]));
  }
}

// A bf16 head's q, k, v as a float tile [T, 3 hs]: q | k | v side by side.
template <class T, class A>
HeadView<T> float_head(const A* q, int T_, int C, int hs) {
  T* tile = thread_buffer<T, Scratch::kAttentionQkv>(int64_t{T_} * 3 * hs);
  for (int part = 0; part < 3; ++part) copy_tile(tile + part * hs, 3 * hs, q + int64_t{part} * C, 3 * C, T_, hs);
  return {tile, 3 * hs, hs, hs, T_, hs};
}

}  // namespace

template <class A>
void attention_forward(A* out, compute_t<A>* lse, const A* qkv, int B, int T_, int C, int NH) {
  using T = compute_t<A>;
  const int hs = C / NH;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const Head<const A> x = head(qkv, bh, T_, C, NH);
    if constexpr (std::is_same_v<A, T>) {
      forward_head<T>({x.q, 3 * C, C, C, T_, hs}, out + x.out_offset, lse + x.lse_offset);
    } else {
      // bf16: this head's operands read into float tiles, its output rounded once at the end.
      const HeadView<T> h = float_head<T>(x.q, T_, C, hs);
      T* y = thread_buffer<T, Scratch::kAttentionOut>(int64_t{T_} * hs);
      forward_head<T>(h, y, lse + x.lse_offset);
      copy_tile(out + x.out_offset, C, y, hs, T_, hs);
    }
  }
}

template <class A>
void attention_backward(A* dqkv, const A* dout, const A* qkv, const A* out, const compute_t<A>* lse, int B, int T_,
                        int C, int NH) {
  using T = compute_t<A>;
  const int hs = C / NH;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const Head<const A> x = head(qkv, bh, T_, C, NH);
    A* dq = dqkv + (x.q - qkv);
    if constexpr (std::is_same_v<A, T>) {
      backward_head<T>({x.q, 3 * C, C, C, T_, hs}, dout + x.out_offset, out + x.out_offset, lse + x.lse_offset, dq);
    } else {
      const HeadView<T> h = float_head<T>(x.q, T_, C, hs);
      T* dy = thread_buffer<T, Scratch::kAttentionOut>(int64_t{T_} * 2 * hs);
      T* y = dy + size_t(T_) * hs;
      copy_tile(dy, hs, dout + x.out_offset, C, T_, hs);
      copy_tile(y, hs, out + x.out_offset, C, T_, hs);
      T* grad = thread_buffer<T, Scratch::kAttentionGrad>(int64_t{T_} * 3 * hs);
      backward_head<T>(h, dy, y, lse + x.lse_offset, grad);
      for (int part = 0; part < 3; ++part) copy_tile(dq + int64_t{part} * C, 3 * C, grad + part * hs, 3 * hs, T_, hs);
    }
  }
}

#define KL_INSTANTIATE(A)                                                                \
  template void attention_forward<A>(A*, compute_t<A>*, const A*, int, int, int, int); \
  template void attention_backward<A>(A*, const A*, const A*, const A*, const compute_t<A>*, int, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
KL_INSTANTIATE(bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
