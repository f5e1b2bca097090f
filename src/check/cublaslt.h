// One header per library's error check, all in src/check/: cuda.h (runtime calls and kernel
// launches), cublaslt.h, nccl.h, mpi.h, hdf5.h. Each failure ends in kl::fatal (src/util/error.h):
// rank, file, line, the call and the library's own sentence, then the whole job ends. For an
// expected failure (a user's file, a missing device) report a UserError instead of using these.
//
// KL_CHECK_CUBLAS(call): a cublasStatus_t that must be CUBLAS_STATUS_SUCCESS.
#pragma once

#include <cublasLt.h>

#include <string>

#include "src/util/error.h"

#define KL_CHECK_CUBLAS(call)                                                                       \
  do {                                                                                              \
    const cublasStatus_t kl_cublas_status = (call);                                                 \
    if (kl_cublas_status != CUBLAS_STATUS_SUCCESS) {                                                \
      ::kl::fatal(__FILE__, __LINE__, #call,                                                        \
                  std::string("cuBLASLt error: ") + cublasLtGetStatusString(kl_cublas_status));     \
    }                                                                                               \
  } while (0)
