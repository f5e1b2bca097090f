// Error checks for CUDA, cuBLASLt and NCCL calls. Each ends in kl::fatal (src/util/error.h): rank,
// file, line, the call and the library's own sentence, then the whole job ends.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "src/util/error.h"

#define KL_CHECK_CUDA(call)                                                                        \
  do {                                                                                             \
    const cudaError_t kl_cuda_status = (call);                                                     \
    if (kl_cuda_status != cudaSuccess) {                                                           \
      ::kl::fatal(__FILE__, __LINE__, #call,                                                       \
                  std::string("CUDA error: ") + cudaGetErrorName(kl_cuda_status) + ": " +          \
                      cudaGetErrorString(kl_cuda_status));                                         \
    }                                                                                              \
  } while (0)

// After a kernel launch: a bad configuration (too many threads, too much shared memory) shows here.
#define KL_CHECK_LAUNCH() KL_CHECK_CUDA(cudaGetLastError())
