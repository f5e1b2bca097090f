#include "src/train/preemption.h"

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>

namespace kl {
namespace {

volatile std::sig_atomic_t requested = 0;

void on_preemption_signal(int) { requested = 1; }

sigset_t preemption_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

}  // namespace

void install_preemption_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // No handler may run on a compute thread: oneDNN's JIT f32 GEMM kernels (Debian's 2.6, fixed
    // upstream in 3.12, uxlfoundation/oneDNN#4855) point rsp into the heap while they run, so a
    // signal frame pushed there overwrites heap memory ("malloc(): invalid next size" a few calls
    // later). The signals are blocked here, before any other thread exists (every thread started
    // later inherits the mask), and one thread of their own waits for them.
    const sigset_t set = preemption_signals();
    if (const int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
      std::fprintf(stderr, "kilolayer: warning: cannot block SIGTERM/SIGUSR1 (error %d)\n", err);
    }
    // The handler stays as well, for a thread that unblocks them again (a library's own threads):
    // there the signal sets the flag instead of ending the process.
    struct sigaction action {};
    action.sa_handler = on_preemption_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGUSR1, &action, nullptr);
    std::thread([set] {
      for (int signal = 0;;) {
        if (sigwait(&set, &signal) == 0) requested = 1;
      }
    }).detach();
  });
}

bool preemption_requested() { return requested != 0; }

}  // namespace kl
