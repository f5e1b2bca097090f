#include "comm/watchdog.h"

#include <cstdio>
#include <cstdlib>

#include "src/util/error.h"

namespace kl {
namespace {

std::string describe(const CommOp& op) {
  if (op.seq == 0) return "none";
  char text[160];
  std::snprintf(text, sizeof text, "#%llu %s%s%s, %lld bytes", static_cast<unsigned long long>(op.seq), op.kind.c_str(),
                op.peer >= 0 ? " peer " : "", op.peer >= 0 ? std::to_string(op.peer).c_str() : "",
                static_cast<long long>(op.bytes));
  return text;
}

}  // namespace

Watchdog& Watchdog::get() {
  static Watchdog watchdog;
  return watchdog;
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::arm(double timeout_s, int rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  timeout_s_ = timeout_s;
  rank_ = rank;
  if (timeout_s > 0 && !thread_.joinable()) thread_ = std::thread([this] { watch(); });
}

uint64_t Watchdog::started(const std::string& kind, int peer, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_started_ = {next_seq_, kind, peer, bytes};
  open_.emplace(next_seq_, last_started_);
  return next_seq_++;
}

void Watchdog::completed(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = open_.find(seq);
  if (it == open_.end()) return;
  if (seq > last_completed_.seq) last_completed_ = it->second;
  open_.erase(it);
}

Watchdog::Blocked::Blocked(uint64_t seq, Wait wait) {
  Watchdog& w = get();
  std::lock_guard<std::mutex> lock(w.mutex_);
  w.blocked_ = true;
  w.wait_ = wait;
  w.blocked_since_ = std::chrono::steady_clock::now();
  const auto it = w.open_.find(seq);
  w.awaited_ = it != w.open_.end() ? it->second : CommOp{seq, "an operation", -1, 0};
}

Watchdog::Blocked::~Blocked() {
  Watchdog& w = get();
  std::lock_guard<std::mutex> lock(w.mutex_);
  w.blocked_ = false;
}

double Watchdog::waited_locked() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - blocked_since_).count();
}

bool Watchdog::overdue() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return blocked_ && timeout_s_ > 0 && waited_locked() >= timeout_s_;
}

std::string Watchdog::report() const {
  return "waiting for " + describe(awaited_) + "; last started " + describe(last_started_) + "; last completed " +
         describe(last_completed_);
}

void Watchdog::print_locked(double waited) {
  if (printed_) return;  // the polled waiter and the watchdog thread may both get here
  printed_ = true;
  std::fprintf(stderr,
               "kilolayer: error on rank %d: communication stuck for %.0f s (parallel.timeout_s = %g): %s. "
               "A peer died, stopped or is waiting in another operation; ending the job.\n",
               rank_, waited, timeout_s_, report().c_str());
  std::fflush(stderr);
}

void Watchdog::end_job() {
  // Give the other blocked ranks a moment to print their view before mpirun ends them.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::_Exit(kExitCommTimeout);
}

void Watchdog::expire(const std::function<void()>& abort) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    print_locked(waited_locked());
  }
  abort();
  end_job();
}

void Watchdog::watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_ || !blocked_ || timeout_s_ <= 0) continue;
    const double waited = waited_locked();
    if (waited < timeout_s_ + (wait_ == kPolled ? kPolledGrace : 0)) continue;
    print_locked(waited);
    lock.unlock();
    end_job();
  }
}

}  // namespace kl
