// Preemption signals against the CPU's matrix products. oneDNN's JIT f32 GEMM kernels (Debian's 2.6)
// point rsp into the heap while they run, so a signal handler that runs on a thread inside one
// writes its frame over heap memory. install_preemption_handlers() keeps SIGUSR1/SIGTERM off every
// thread but its own. The test, in a child process of its own: a thread sends SIGUSR1 to the process
// every 20 us while the main thread runs products of the sizes the model uses and allocates around
// them. With the signals handled on the computing threads (the code before this test) the child
// died of heap corruption within the first second (malloc's abort); here it must exit 0, and the flag
// must be set.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "src/kernels/cpu/onednn.h"
#include "src/train/preemption.h"

namespace kl {
namespace {

void products_under_signals() {
  install_preemption_handlers();
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    while (!stop) {
      ::kill(::getpid(), SIGUSR1);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  float sum = 0;
  for (int round = 0; std::chrono::steady_clock::now() < until; ++round) {
    const int tokens = 1024, d = 32 << (round % 3);  // a layer's dx and dW products, d = 32..128
    std::vector<float> a(size_t(tokens) * 4 * d, 0.01f), b(size_t(4) * d * d, 0.02f), c(size_t(tokens) * d);
    cpu::onednn_sgemm(false, true, tokens, d, 4 * d, 1.0f, a.data(), 4 * d, b.data(), 4 * d, 0.0f, c.data(), d);
    std::vector<float> dw(size_t(4) * d * d);
    cpu::onednn_sgemm(true, false, 4 * d, d, tokens, 1.0f, a.data(), 4 * d, c.data(), d, 0.0f, dw.data(), d);
    sum += dw[0];
  }
  stop = true;
  sender.join();
  std::_Exit(preemption_requested() && sum > 0 ? 0 : 3);
}

TEST(Preemption, SignalsDuringMatrixProductsLeaveTheHeapIntact) {
  if (!cpu::have_onednn()) GTEST_SKIP() << "built without oneDNN (KL_ONEDNN=OFF)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(products_under_signals(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace kl
