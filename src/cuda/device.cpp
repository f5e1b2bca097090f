#include "src/cuda/device.h"

#include <cstdlib>

#include "comm/device_setup.h"
#include "src/util/error.h"

namespace kl::cuda {

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // not sticky: clear it
    return false;
  }
  if (count == 0) {
    if (why) *why = "cudaGetDeviceCount found 0 devices";
    return false;
  }
  return true;
}

int select_device() {
  std::string why;
  if (!device_available(&why)) throw UserError("run.device = cuda: no CUDA device: " + why);
  int count = 0;
  KL_CHECK_CUDA(cudaGetDeviceCount(&count));
  const int local_rank = local_rank_from_env([](const char* name) { return std::getenv(name); }).value_or(0);
  const int device = choose_device(local_rank, count);
  KL_CHECK_CUDA(cudaSetDevice(device));
  return device;
}

}  // namespace kl::cuda
