// oneDNN (Debian's libdnnl, which picks its kernels from the CPU's features at run time, whatever
// OPENBLAS_CORETYPE says) for the CPU's fp32 matrix products, and for bf16 products: operands
// rounded to bf16, products accumulated and written in fp32 (run.precision = bf16 on the CPU).
// bench/gemm_candidates.cpp is the measurement that chose it (docs/performance.md).
#pragma once

#include <string>

#include "src/kernels/cpu/bf16.h"  // bf16, round_to_bf16 (what bf16_gemm's operands become)

namespace kl::cpu {

// Whether this build has oneDNN (CMake's KL_ONEDNN).
bool have_onednn();

// Row-major C[m,n] = alpha op(A) op(B) + beta C through dnnl_sgemm.
void onednn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc);

// Row-major C[m,n] = op(A) op(B) + beta C with A and B rounded to bf16 (nearest even) and the
// products summed in fp32; beta is 0 or 1. Called outside parallel regions (it runs on every
// thread). Deterministic for a fixed thread count.
// a_unchanged: the caller promises that A's memory has not changed since this thread's previous
// call, so that when that call staged the same matrix (the same pointer, rows, columns and leading
// dimension as stored) its bf16 copy is used again. linear_backward's two products read dY alike.
void bf16_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc, bool a_unchanged = false);

// Empty when bf16 products can run here, else why not (the CPU feature or build option missing).
std::string bf16_products_unavailable();

// Row-major C[m,n] = op(A) op(B) (+ bias[n]) + beta C on bf16 operands as stored (the CPU's bf16
// activations), the products summed in fp32; C is fp32 or bf16 (rounded once, after the bias);
// beta is 0, or 1 for an fp32 C. bias may be null. Called outside parallel regions.
template <class C>
void bf16_matmul(bool trans_a, bool trans_b, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb,
                 const bf16* bias, float beta, C* c, int ldc);

}  // namespace kl::cpu
