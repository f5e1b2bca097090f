// One header per library's error check, all in src/check/: cuda.h (runtime calls and kernel
// launches), cublaslt.h, nccl.h, mpi.h, hdf5.h. Each failure ends in kl::fatal (src/util/error.h):
// rank, file, line, the call and the library's own sentence, then the whole job ends. For an
// expected failure (a user's file, a missing device) report a UserError instead of using these.
//
// KL_CHECK_H5(call): an HDF5 call whose negative result is an internal error (HDF5 only writes:
// checkpoints are read through their index, src/checkpoint/index.h); evaluates to the call's result.
#pragma once

#include <hdf5.h>

#include <string>

#include "src/util/error.h"

#define KL_CHECK_H5(call)                                                                   \
  ([&] {                                                                                   \
    const auto kl_h5_result = (call);                                                      \
    if (kl_h5_result < 0) ::kl::fatal(__FILE__, __LINE__, #call, "HDF5 call failed");      \
    return kl_h5_result;                                                                   \
  }())
