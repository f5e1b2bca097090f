// Causal multi-head attention: per (batch row, head), S = Q K^T / sqrt(hs), P = softmax over the
// positions j <= i, out = P V. Each (b, h) pair is one task; the products inside run single-threaded
// (OpenBLAS's OpenMP build does that inside a parallel region).
//
// The products skip the masked upper triangle in blocks of kBlock positions: row block [r0, r1)
// only meets keys [0, r1), and key block [c0, c1) only queries [c0, T). With T = 128 that is 62.5%
// of the square's multiply-adds, and (nb + 1) / 2nb for nb blocks in general. P and dS are stored
// in full [T, T] with exact zeros above the diagonal.
#include <algorithm>
#include <cmath>

#include "src/kernels/cpu/ops.h"

namespace kl::cpu {
namespace {

constexpr int kBlock = 32;

// One (b, h) pair's operands inside the fused qkv [B, T, 3C] and the [B, T, C] output.
template <class Q>
struct Head {
  Q* q;  // k = q + C, v = q + 2C, leading dimension 3C
  int64_t out_offset;
  int64_t probs_offset;
};

template <class Q>
Head<Q> head(Q* qkv, int bh, int T_, int C, int NH) {
  const int b = bh / NH, h = bh % NH, hs = C / NH;
  return {qkv + int64_t{b} * T_ * 3 * C + h * hs, int64_t{b} * T_ * C + h * hs, int64_t{bh} * T_ * T_};
}

}  // namespace

template <class T>
void attention_forward(T* out, T* probs, const T* qkv, int B, int T_, int C, int NH) {
  const int hs = C / NH, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const Head<const T> x = head(qkv, bh, T_, C, NH);
    const T* k = x.q + C;
    const T* v = x.q + 2 * C;
    T* p = probs + x.probs_offset;
    T* y = out + x.out_offset;
    for (int r0 = 0; r0 < T_; r0 += kBlock) {
      const int r1 = std::min(r0 + kBlock, T_), rows = r1 - r0;
      gemm<T>(false, true, rows, r1, hs, scale, x.q + int64_t{r0} * ld, ld, k, ld, T(0), p + int64_t{r0} * T_, T_);
      for (int i = r0; i < r1; ++i) {
        T* row = p + int64_t{i} * T_;
        T max = row[0];
        for (int j = 1; j <= i; ++j) max = row[j] > max ? row[j] : max;
        T sum = 0;
        for (int j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - max);
          sum += row[j];
        }
        const T inv = T(1) / sum;
        for (int j = 0; j <= i; ++j) row[j] *= inv;
        for (int j = i + 1; j < T_; ++j) row[j] = 0;
      }
      gemm<T>(false, false, rows, hs, r1, T(1), p + int64_t{r0} * T_, T_, v, ld, T(0), y + int64_t{r0} * C, C);
    }
  }
}

template <class T>
void attention_backward(T* dqkv, T* dprobs, const T* dout, const T* qkv, const T* probs, int B,
                        int T_, int C, int NH) {
  const int hs = C / NH, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const Head<const T> x = head(qkv, bh, T_, C, NH);
    const T* k = x.q + C;
    const T* v = x.q + 2 * C;
    T* dq = dqkv + (x.q - qkv);
    T* dk = dq + C;
    T* dv = dq + 2 * C;
    const T* dy = dout + x.out_offset;
    const T* p = probs + x.probs_offset;
    T* ds = dprobs + x.probs_offset;
    for (int r0 = 0; r0 < T_; r0 += kBlock) {  // query blocks: dP, dS, dQ
      const int r1 = std::min(r0 + kBlock, T_), rows = r1 - r0;
      gemm<T>(false, true, rows, r1, hs, T(1), dy + int64_t{r0} * C, C, v, ld, T(0), ds + int64_t{r0} * T_, T_);
      for (int i = r0; i < r1; ++i) {  // dS = P * (dP - rowsum(P * dP)), zero above the diagonal
        const T* prow = p + int64_t{i} * T_;
        T* row = ds + int64_t{i} * T_;
        T dot = 0;
        for (int j = 0; j <= i; ++j) dot += prow[j] * row[j];
        for (int j = 0; j <= i; ++j) row[j] = prow[j] * (row[j] - dot);
        for (int j = i + 1; j < T_; ++j) row[j] = 0;
      }
      gemm<T>(false, false, rows, hs, r1, scale, ds + int64_t{r0} * T_, T_, k, ld, T(0), dq + int64_t{r0} * ld, ld);
    }
    for (int c0 = 0; c0 < T_; c0 += kBlock) {  // key blocks: dV = P^T dY, dK = dS^T Q / sqrt(hs)
      const int cols = std::min(c0 + kBlock, T_) - c0, below = T_ - c0;
      const int64_t corner = int64_t{c0} * T_ + c0;
      gemm<T>(true, false, cols, hs, below, T(1), p + corner, T_, dy + int64_t{c0} * C, C, T(0), dv + int64_t{c0} * ld, ld);
      gemm<T>(true, false, cols, hs, below, scale, ds + corner, T_, x.q + int64_t{c0} * ld, ld, T(0), dk + int64_t{c0} * ld, ld);
    }
  }
}

#define KL_INSTANTIATE(T)                                                                     \
  template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                   \
  template void attention_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
