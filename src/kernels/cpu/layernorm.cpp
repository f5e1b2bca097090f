// LayerNorm over the last dimension, eps 1e-5 (PyTorch's default), with weight and bias.
//
// The row sums are `omp simd` reductions: without one GCC adds a row's C values one after another
// (float addition is not associative, and the build has no -ffast-math), a chain of dependent
// scalar additions that took most of the kernel's time. The reduction's lane order is fixed by the
// binary, and each row is summed by one thread, so the result still depends on neither the thread
// count nor the row split.
#include <algorithm>
#include <cmath>

#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

namespace {
constexpr double kEps = 1e-5;
// Columns whose parameter-gradient sums a thread keeps in local arrays while it walks the rows.
constexpr int kColumnBlock = 64;

// dweight[c] += sum_n dy[n, c] norm[n, c] and dbias[c] += sum_n dy[n, c] for `width` <= kColumnBlock
// columns (pointers already offset to the first), the rows added in order. The sums are kept in
// local arrays (nothing for the compiler to guard against aliasing); without dbias its sums go to
// the scratch array instead of a test inside the loop.
template <class T, class DOut>
void add_parameter_gradients(T* dweight, T* dbias, const DOut* dout, const T* inp, const T* mean, const T* rstd,
                             int N, int C, int width) {
  T dw[kColumnBlock], db[kColumnBlock];
  for (int c = 0; c < width; ++c) {
    dw[c] = dweight[c];
    db[c] = dbias ? dbias[c] : T(0);
  }
  for (int n = 0; n < N; ++n) {
    const T* x = inp + int64_t{n} * C;
    const DOut* dy = dout + int64_t{n} * C;
    const T m = mean[n], s = rstd[n];
#pragma omp simd
    for (int c = 0; c < width; ++c) {
      const T d = load(dy[c]);
      dw[c] += d * (x[c] - m) * s;
      db[c] += d;
    }
  }
  for (int c = 0; c < width; ++c) {
    dweight[c] = dw[c];
    if (dbias) dbias[c] = db[c];
  }
}

}  // namespace

template <class T, class Out, class W>
void layernorm_forward(Out* out, T* mean, T* rstd, const T* inp, const W* weight, const W* bias,
                       int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* x = inp + int64_t{n} * C;
    Out* y = out + int64_t{n} * C;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < C; ++c) sum += x[c];
    const T m = sum / C;
    T var = 0;
#pragma omp simd reduction(+ : var)
    for (int c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
    const T s = T(1) / std::sqrt(var / C + T(kEps));
#pragma omp simd
    for (int c = 0; c < C; ++c) store(y[c], (x[c] - m) * s * load(weight[c]) + load(bias[c]));
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class T, class DOut, class W>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const DOut* dout, const T* inp,
                        const W* weight, const T* mean, const T* rstd, int N, int C) {
#pragma omp parallel
  {
    // Rows in parallel for the input gradient. No barrier after it: the parameter gradients below
    // read nothing it writes.
#pragma omp for schedule(static) nowait
    for (int n = 0; n < (dinp ? N : 0); ++n) {
      const T* x = inp + int64_t{n} * C;
      const DOut* dy = dout + int64_t{n} * C;
      T* dx = dinp + int64_t{n} * C;
      const T m = mean[n], s = rstd[n];
      T dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
      for (int c = 0; c < C; ++c) {
        const T dnorm = load(dy[c]) * load(weight[c]);
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (x[c] - m) * s;
      }
      dnorm_mean /= C;
      dnorm_norm_mean /= C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        const T norm = (x[c] - m) * s;
        dx[c] += (load(dy[c]) * load(weight[c]) - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
    // Columns in parallel for the parameter gradients: each thread sums its channels over all rows,
    // in row order, so the sums do not depend on the thread count.
    if (dweight) {
      const Range cols = share(C, omp_get_thread_num(), omp_get_num_threads());
      for (int64_t c0 = cols.begin; c0 < cols.end; c0 += kColumnBlock) {
        const int width = static_cast<int>(std::min<int64_t>(kColumnBlock, cols.end - c0));
        add_parameter_gradients(dweight + c0, dbias ? dbias + c0 : nullptr, dout + c0, inp + c0, mean, rstd,
                                N, C, width);
      }
    }
  }
}

// T: the stream; Out / DOut: the output and its gradient; W: the weight and bias.
#define KL_INSTANTIATE(T, Out, W)                                                                               \
  template void layernorm_forward<T, Out, W>(Out*, T*, T*, const T*, const W*, const W*, int, int);              \
  template void layernorm_backward<T, Out, W>(T*, T*, T*, const Out*, const T*, const W*, const T*, const T*, int, \
                                              int);
KL_INSTANTIATE(float, float, float)
KL_INSTANTIATE(double, double, double)
KL_INSTANTIATE(float, bf16, bf16)   // pre-norm: the branch's input, a product's
KL_INSTANTIATE(float, float, bf16)  // post-norm: the stream itself
#undef KL_INSTANTIATE

}  // namespace kl::cpu
