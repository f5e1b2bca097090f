// The Linear layer on cuBLASLt: the bias rides in the forward product's epilogue; the weight
// gradient accumulates in fp32 (beta = 1, fp32 C beside bf16 operands under run.precision = bf16);
// the bias gradient is a deterministic column sum.
#include "src/kernels/cuda/common.cuh"
#include "src/kernels/cuda/cublaslt.h"

namespace kl::cuda {

template <class T>
void linear_forward(Blas& blas, T* out, const T* inp, const T* weight, const T* bias, int N, int I, int O,
                    cudaStream_t stream) {
  Gemm g;
  g.trans_b = true;
  g.m = N, g.n = O, g.k = I;
  g.a = {inp, dtype_of<T>(), I};
  g.b = {weight, dtype_of<T>(), I};
  g.c = out, g.c_type = dtype_of<T>(), g.ldc = O;
  g.bias = bias;
  blas.gemm(g, stream);
}

template <class T>
void linear_backward(Blas& blas, T* dinp, float* dweight, float* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int I, int O, cudaStream_t stream) {
  if (dinp) {  // dinp[N,I] = dout[N,O] W[O,I]
    Gemm g;
    g.m = N, g.n = I, g.k = O;
    g.a = {dout, dtype_of<T>(), O};
    g.b = {weight, dtype_of<T>(), I};
    g.c = dinp, g.c_type = dtype_of<T>(), g.ldc = I;
    blas.gemm(g, stream);
  }
  if (dweight) {  // dweight[O,I] += dout^T inp
    Gemm g;
    g.trans_a = true;
    g.m = O, g.n = I, g.k = N;
    g.beta = 1.0f;
    g.a = {dout, dtype_of<T>(), O};
    g.b = {inp, dtype_of<T>(), I};
    g.c = dweight, g.c_type = DType::kF32, g.ldc = I;
    blas.gemm(g, stream);
  }
  if (dbias) column_sums_accumulate(dbias, dout, N, O, stream);
}

#define KL_INSTANTIATE(T)                                                                                       \
  template void linear_forward<T>(Blas&, T*, const T*, const T*, const T*, int, int, int, cudaStream_t);        \
  template void linear_backward<T>(Blas&, T*, float*, float*, const T*, const T*, const T*, int, int, int,      \
                                   cudaStream_t);
KL_INSTANTIATE(float)
KL_INSTANTIATE(bf16)
#undef KL_INSTANTIATE

}  // namespace kl::cuda
