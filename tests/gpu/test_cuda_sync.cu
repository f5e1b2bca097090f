// KL_CUDA_SYNC=1 (src/check/cuda.h): a kernel that faults is reported at its own launch,
// by file and line, not at whatever call synchronises next. Each case runs in a child process (a
// death test; the fault leaves the child's CUDA context unusable). Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "src/cuda/device.h"
#include "src/check/cuda.h"

namespace {

__global__ void write_through(float* pointer) { *pointer = 1.0f; }

// Launches a kernel that writes through a null pointer (an illegal address), then stops short of
// any synchronising call of its own.
void launch_a_faulting_kernel() {
  write_through<<<1, 1>>>(nullptr);
  KL_CHECK_LAUNCH();  // the line the report must name
  std::exit(0);
}
constexpr int kLaunchLine = __LINE__ - 3;

TEST(CudaSync, AFaultNamesTheLaunchThatCausedIt) {
  std::string why;
  if (!kl::cuda::device_available(&why)) GTEST_SKIP() << "no CUDA device: " << why;
  // "threadsafe": the child is a fresh process that reads KL_CUDA_SYNC itself (check.h caches it).
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ::setenv("KL_CUDA_SYNC", "1", 1);
  // Usually the synchronisation reports it ("kernel run"); a fault that is already over by then can
  // come back from the launch check itself. Either names this launch.
  EXPECT_EXIT(launch_a_faulting_kernel(), ::testing::ExitedWithCode(kl::kExitInternalError),
              "test_cuda_sync.cu:" + std::to_string(kLaunchLine) + ": check `kernel (run|launch).*illegal");
  ::unsetenv("KL_CUDA_SYNC");
}

}  // namespace
