// One header per library's error check, all in src/check/: cuda.h (runtime calls and kernel
// launches), cublaslt.h, nccl.h, mpi.h, hdf5.h. Each failure ends in kl::fatal (src/util/error.h):
// rank, file, line, the call and the library's own sentence, then the whole job ends. For an
// expected failure (a user's file, a missing device) report a UserError instead of using these.
//
// KL_CHECK_CUDA(call): a cudaError_t that must be cudaSuccess. KL_CHECK_LAUNCH(): after a kernel
// launch.
// A kernel that faults (an illegal address, say) reports asynchronously, at whatever call next
// synchronises, with that call's file:line. KL_CUDA_SYNC=1 in the environment makes every
// KL_CHECK_LAUNCH wait for its kernel, so the report names the kernel's own launch site (slow: for
// debugging; CUDA_LAUNCH_BLOCKING=1 serialises launches but still reports at the next check).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdlib>
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

namespace kl::cuda {

// KL_CUDA_SYNC set to anything but "" or "0"; read once per process.
inline bool sync_after_launch() {
  static const bool on = [] {
    const char* value = std::getenv("KL_CUDA_SYNC");
    return value != nullptr && *value != '\0' && std::string(value) != "0";
  }();
  return on;
}

// After a kernel launch: a bad configuration (too many threads, too much shared memory) shows at
// once; with KL_CUDA_SYNC=1, a fault inside the kernel too.
inline void check_launch(const char* file, int line) {
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    fatal(file, line, "kernel launch",
          std::string("CUDA error: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
  if (!sync_after_launch()) return;
  status = cudaDeviceSynchronize();
  if (status != cudaSuccess) {
    fatal(file, line, "kernel run (KL_CUDA_SYNC=1: synchronised after this launch)",
          std::string("CUDA error: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
}

}  // namespace kl::cuda

#define KL_CHECK_LAUNCH() ::kl::cuda::check_launch(__FILE__, __LINE__)
