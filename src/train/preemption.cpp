#include "src/train/preemption.h"

#include <csignal>

namespace kl {
namespace {

volatile std::sig_atomic_t requested = 0;

void on_preemption_signal(int) { requested = 1; }

}  // namespace

void install_preemption_handlers() {
  struct sigaction action {};
  action.sa_handler = on_preemption_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

bool preemption_requested() { return requested != 0; }

}  // namespace kl
