#include "src/kernels/cuda/cublaslt.h"

#include <string>

#include "src/check/cuda.h"
#include "src/check/cublaslt.h"
#include "src/util/error.h"

namespace kl::cuda {
namespace {

// 32 MiB: what NVIDIA recommends for Hopper's cuBLASLt kernels.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

cudaDataType_t cuda_type(DType t) { return t == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

size_t size_of(DType t) { return t == DType::kF32 ? 4 : 2; }

// The largest power of two (at most 256) dividing the address and, in a batch, the stride in
// bytes (every entry's address): the heuristic must not pick a kernel that needs more alignment
// than the operand has (parameter tensors are 64-byte aligned, attention's heads less).
uint32_t alignment(const void* p, DType type, int64_t stride, int batch) {
  auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p));
  if (batch > 1) bits |= static_cast<uint64_t>(stride) * size_of(type);
  uint32_t a = 256;
  while (a > 1 && bits % a != 0) a /= 2;
  return a;
}

cublasLtMatrixLayout_t layout(DType type, int rows, int cols, int ld, int batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  KL_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&l, cuda_type(type), static_cast<uint64_t>(rows),
                                             static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = batch;
    KL_CHECK_CUBLAS(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    KL_CHECK_CUBLAS(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return l;
}

}  // namespace

Blas::Blas(bool tf32) : tf32_(tf32), workspace_bytes_(kWorkspaceBytes) {
  KL_CHECK_CUBLAS(cublasLtCreate(&handle_));
  KL_CHECK_CUDA(cudaMalloc(&workspace_, workspace_bytes_));
}

Blas::~Blas() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
  }
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

cublasComputeType_t Blas::compute_type(DType a, DType b) const {
  if (a == DType::kF32 && b == DType::kF32) return tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  return CUBLAS_COMPUTE_32F;  // bf16 operands, fp32 accumulation
}

Blas::Plan& Blas::plan(const Gemm& g) {
  // Column-major view (see the header): A' = B, B' = A, C' = C^T, m' = n, n' = m.
  const uint32_t align_a = alignment(g.b.data, g.b.type, g.b.stride, g.batch);
  const uint32_t align_b = alignment(g.a.data, g.a.type, g.a.stride, g.batch);
  const uint32_t align_c = alignment(g.c, g.c_type, g.stride_c, g.batch);
  const Key key{g.trans_a, g.trans_b, g.m,  g.n,  g.k,  g.batch, g.a.ld, g.b.ld, g.ldc, g.a.stride,
                g.b.stride, g.stride_c, static_cast<int>(g.a.type), static_cast<int>(g.b.type),
                static_cast<int>(g.c_type), g.bias != nullptr, align_a, align_b, align_c};
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;

  Plan p;
  KL_CHECK_CUBLAS(cublasLtMatmulDescCreate(&p.desc, compute_type(g.a.type, g.b.type), CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  KL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  KL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  const cublasLtEpilogue_t epilogue = g.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  KL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  if (g.bias) {
    const cudaDataType_t bias_type = cuda_type(g.c_type);
    KL_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
  }
  // Stored shapes: op(A') is m' x k, op(B') is k x n'.
  const int mp = g.n, np = g.m;
  p.a = g.trans_b ? layout(g.b.type, g.k, mp, g.b.ld, g.batch, g.b.stride)
                  : layout(g.b.type, mp, g.k, g.b.ld, g.batch, g.b.stride);
  p.b = g.trans_a ? layout(g.a.type, np, g.k, g.a.ld, g.batch, g.a.stride)
                  : layout(g.a.type, g.k, np, g.a.ld, g.batch, g.a.stride);
  p.c = layout(g.c_type, mp, np, g.ldc, g.batch, g.stride_c);

  cublasLtMatmulPreference_t preference = nullptr;
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace = workspace_bytes_;
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &workspace, sizeof workspace));
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                       &align_a, sizeof align_a));
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                       &align_b, sizeof align_b));
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                       &align_c, sizeof align_c));
  KL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                       &align_c, sizeof align_c));
  cublasLtMatmulHeuristicResult_t result{};
  int found_count = 0;
  KL_CHECK_CUBLAS(cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, preference, 1, &result,
                                                 &found_count));
  cublasLtMatmulPreferenceDestroy(preference);
  if (found_count == 0) {
    fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic",
          "no cuBLASLt algorithm for m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) +
              " k=" + std::to_string(g.k) + " batch=" + std::to_string(g.batch));
  }
  p.algo = result.algo;
  return plans_.emplace(key, p).first->second;
}

void Blas::gemm(const Gemm& g, cudaStream_t stream) {
  KL_CHECK(g.m > 0 && g.n > 0 && g.k > 0 && g.batch >= 1, "gemm: empty shape");
  KL_CHECK(!(g.bias && g.batch > 1), "gemm: a bias epilogue on a batched product");
  Plan& p = plan(g);
  if (g.bias) {
    KL_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
  }
  KL_CHECK_CUBLAS(cublasLtMatmul(handle_, p.desc, &g.alpha, g.b.data, p.a, g.a.data, p.b, &g.beta, g.c, p.c, g.c,
                                 p.c, &p.algo, workspace_, workspace_bytes_, stream));
}

}  // namespace kl::cuda
