#include "src/train/device_worker.h"

#include "src/util/error.h"
#ifdef KL_HAVE_CUDA
#include "src/cuda/cuda_worker.h"
#endif

namespace kl {

std::unique_ptr<Worker> make_device_worker(const Config& config, const Comm& dp) {
#ifdef KL_HAVE_CUDA
  return cuda::make_worker(config, dp);
#else
  (void)config;
  (void)dp;
  throw UserError("run.device = cuda: this kilolayer was built without the CUDA backend (configure with "
                  "-DKL_CUDA=ON on a machine with the CUDA toolkit, nvcc, cuBLASLt and NCCL)");
#endif
}

}  // namespace kl
