// oneDNN (Debian's libdnnl, which picks its kernels from the CPU's features at run time, whatever
// OPENBLAS_CORETYPE says) for the CPU's fp32 matrix products, and for bf16 products on bf16
// activations, accumulated in fp32 (run.precision = bf16 on the CPU).
// bench/gemm_candidates.cpp is the measurement that chose it (docs/performance.md).
#pragma once

#include <string>

#include "src/kernels/cpu/bf16.h"

namespace kl::cpu {

// Whether this build has oneDNN (CMake's KL_ONEDNN).
bool have_onednn();

// Row-major C[m,n] = alpha op(A) op(B) + beta C through dnnl_sgemm.
void onednn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc);

// Row-major C[m,n] = op(A) op(B) (+ bias[n]) + beta C on bf16 operands as stored (the CPU's bf16
// activations), the products summed in fp32; C is fp32 or bf16 (rounded once, after the bias);
// beta is 0, or 1 for an fp32 C. bias may be null. Called outside parallel regions (it runs on every
// thread). Deterministic for a fixed thread count.
template <class C>
void bf16_matmul(bool trans_a, bool trans_b, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb,
                 const bf16* bias, float beta, C* c, int ldc);

// Empty when bf16 products can run here, else why not (the CPU feature or build option missing).
std::string bf16_products_unavailable();

}  // namespace kl::cpu
