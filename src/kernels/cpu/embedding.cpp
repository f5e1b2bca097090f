// Token plus position embedding.
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cpu/parallel.h"

namespace kl::cpu {

template <class T, class W>
void embedding_forward(T* out, const int32_t* tokens, const W* wte, const W* wpe, int B, int T_,
                       int C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < int64_t{B} * T_; ++n) {
    const W* te = wte + int64_t{tokens[n]} * C;
    const W* pe = wpe + (n % T_) * C;
    T* y = out + n * C;
    for (int c = 0; c < C; ++c) y[c] = load(te[c]) + load(pe[c]);
  }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int T_,
                        int C) {
  // A token can repeat, so rows of dwte may collide: each thread owns a slice of channels instead,
  // and walks the tokens in order (deterministic).
#pragma omp parallel
  {
    const Range cols = share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t n = 0; n < int64_t{B} * T_; ++n) {
      const T* dy = dout + n * C;
      T* dte = dwte + int64_t{tokens[n]} * C;
      T* dpe = dwpe + (n % T_) * C;
      for (int64_t c = cols.begin; c < cols.end; ++c) {
        dte[c] += dy[c];
        dpe[c] += dy[c];
      }
    }
  }
}

#define KL_INSTANTIATE(T)                                                                       \
  template void embedding_forward<T>(T*, const int32_t*, const T*, const T*, int, int, int);    \
  template void embedding_backward<T>(T*, T*, const T*, const int32_t*, int, int, int);
KL_INSTANTIATE(float)
KL_INSTANTIATE(double)
#undef KL_INSTANTIATE
template void embedding_forward<float, bf16>(float*, const int32_t*, const bf16*, const bf16*, int, int, int);

}  // namespace kl::cpu
