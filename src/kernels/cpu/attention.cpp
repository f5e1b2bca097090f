// Causal multi-head attention: per (batch row, head), S = Q K^T / sqrt(hs), P = softmax over the
// positions j <= i, out = P V. Each (b, h) pair is one task; the products inside run single-threaded
// (OpenBLAS's OpenMP build does that inside a parallel region).
#include <cmath>

#include "src/kernels/cpu/ops.h"

namespace kl::cpu {

template <class T>
void attention_forward(T* out, T* probs, const T* qkv, int B, int T_, int C, int NH) {
  const int hs = C / NH;
  const T scale = T(1) / std::sqrt(T(hs));
  const int ld = 3 * C;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    const T* q = qkv + int64_t{b} * T_ * ld + h * hs;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* p = probs + int64_t{bh} * T_ * T_;
    gemm<T>(false, true, T_, T_, hs, scale, q, ld, k, ld, T(0), p, T_);
    for (int i = 0; i < T_; ++i) {
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
    gemm<T>(false, false, T_, hs, T_, T(1), p, T_, v, ld, T(0), out + int64_t{b} * T_ * C + h * hs, C);
  }
}

template <class T>
void attention_backward(T* dqkv, T* dprobs, const T* dout, const T* qkv, const T* probs, int B,
                        int T_, int C, int NH) {
  const int hs = C / NH;
  const T scale = T(1) / std::sqrt(T(hs));
  const int ld = 3 * C;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    const int64_t base = int64_t{b} * T_ * ld + h * hs;
    const T* q = qkv + base;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* dq = dqkv + base;
    T* dk = dq + C;
    T* dv = dq + 2 * C;
    const T* dy = dout + int64_t{b} * T_ * C + h * hs;
    const T* p = probs + int64_t{bh} * T_ * T_;
    T* ds = dprobs + int64_t{bh} * T_ * T_;
    gemm<T>(false, true, T_, T_, hs, T(1), dy, C, v, ld, T(0), ds, T_);  // dP = dY V^T
    gemm<T>(true, false, T_, hs, T_, T(1), p, T_, dy, C, T(0), dv, ld);  // dV = P^T dY
    for (int i = 0; i < T_; ++i) {  // dS = P * (dP - rowsum(P * dP)), zero above the diagonal
      const T* prow = p + int64_t{i} * T_;
      T* row = ds + int64_t{i} * T_;
      T dot = 0;
      for (int j = 0; j <= i; ++j) dot += prow[j] * row[j];
      for (int j = 0; j <= i; ++j) row[j] = prow[j] * (row[j] - dot);
      for (int j = i + 1; j < T_; ++j) row[j] = 0;
    }
    gemm<T>(false, false, T_, hs, T_, scale, ds, T_, k, ld, T(0), dq, ld);  // dQ = dS K / sqrt(hs)
    gemm<T>(true, false, T_, hs, T_, scale, ds, T_, q, ld, T(0), dk, ld);   // dK = dS^T Q / sqrt(hs)
  }
}

#define KL_INSTANTIATE(T)                                                                     \
  template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                   \
  template void attention_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE

}  // namespace kl::cpu
