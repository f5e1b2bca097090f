// Matrix products on cuBLASLt, in row-major terms (the CPU's cpu::gemm convention), optionally
// strided-batched, with the bias in the epilogue.
//
//   C[m,n] = alpha * op(A) op(B) + beta * C   (+ bias[n] on every row of C)
//
// cuBLASLt is column-major: a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
// so the wrapper swaps the operands and passes the same leading dimensions. Plans (descriptors,
// layouts and the heuristic's algorithm) are cached per shape: after the first step no call asks
// the heuristic again. One Blas per device and stream user; not thread-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <array>
#include <map>

#include "src/kernels/cuda/ops.h"

namespace kl::cuda {

enum class DType { kF32, kBF16 };
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::kF32; }
template <>
constexpr DType dtype_of<bf16>() { return DType::kBF16; }

struct Operand {
  const void* data = nullptr;
  DType type = DType::kF32;
  int ld = 0;          // row-major leading dimension (elements)
  int64_t stride = 0;  // elements between batch entries
};

struct Gemm {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  int batch = 1;
  float alpha = 1.0f, beta = 0.0f;
  Operand a, b;
  void* c = nullptr;
  DType c_type = DType::kF32;
  int ldc = 0;
  int64_t stride_c = 0;
  const void* bias = nullptr;  // [n], of c_type, added to every row; not with batch > 1
};

class Blas {
 public:
  // tf32: fp32 products may use TF32 tensor cores (run.tf32); bf16 products always accumulate in fp32.
  explicit Blas(bool tf32);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  void gemm(const Gemm& g, cudaStream_t stream);

  // The compute type the wrapper picks for these operand types (exposed for the tests).
  cublasComputeType_t compute_type(DType a, DType b) const;

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using Key = std::array<int64_t, 19>;  // shapes, strides, types, epilogue, alignments
  Plan& plan(const Gemm& g);

  bool tf32_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace kl::cuda
