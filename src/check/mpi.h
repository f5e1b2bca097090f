// One header per library's error check, all in src/check/: cuda.h (runtime calls and kernel
// launches), cublaslt.h, nccl.h, mpi.h, hdf5.h. Each failure ends in kl::fatal (src/util/error.h):
// rank, file, line, the call and the library's own sentence, then the whole job ends. For an
// expected failure (a user's file, a missing device) report a UserError instead of using these.
//
// KL_CHECK_MPI(call): an MPI return code that must be MPI_SUCCESS. (MPI's default handler,
// MPI_ERRORS_ARE_FATAL, usually ends the job before a code comes back; this names the call when
// one does.)
#pragma once

#include <mpi.h>

#include <string>

#include "src/util/error.h"

#define KL_CHECK_MPI(call)                                                                  \
  do {                                                                                      \
    const int kl_mpi_status = (call);                                                       \
    if (kl_mpi_status != MPI_SUCCESS) {                                                     \
      char kl_mpi_text[MPI_MAX_ERROR_STRING];                                               \
      int kl_mpi_length = 0;                                                                \
      MPI_Error_string(kl_mpi_status, kl_mpi_text, &kl_mpi_length);                         \
      ::kl::fatal(__FILE__, __LINE__, #call, std::string("MPI error: ") + kl_mpi_text);     \
    }                                                                                       \
  } while (0)
