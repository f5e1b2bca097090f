// One header per library's error check, all in src/check/: cuda.h (runtime calls and kernel
// launches), cublaslt.h, nccl.h, mpi.h, hdf5.h. Each failure ends in kl::fatal (src/util/error.h):
// rank, file, line, the call and the library's own sentence, then the whole job ends. For an
// expected failure (a user's file, a missing device) report a UserError instead of using these.
//
// KL_CHECK_NCCL(call): an ncclResult_t that must be ncclSuccess (asynchronous errors are polled by
// comm/nccl/nccl_comm.cpp, which aborts the communicator first).
#pragma once

#include <nccl.h>

#include <string>

#include "src/util/error.h"

#define KL_CHECK_NCCL(call)                                                                          \
  do {                                                                                               \
    const ncclResult_t kl_nccl_status = (call);                                                      \
    if (kl_nccl_status != ncclSuccess) {                                                             \
      ::kl::fatal(__FILE__, __LINE__, #call, std::string("NCCL error: ") + ncclGetErrorString(kl_nccl_status)); \
    }                                                                                                \
  } while (0)
