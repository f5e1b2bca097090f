// Deadlines on communication. Every operation a communicator starts is numbered and recorded
// (kind, peer, bytes); while the caller is blocked waiting for one, a watchdog thread watches the
// clock. Past the deadline (parallel.timeout_s) it prints on this rank the operation waited on, the
// last one started and the last one completed, and ends the process with kExitCommTimeout; mpirun
// (or srun) then ends the job. So no rank blocks forever on a peer that died, stopped or diverged
// into another collective. Every rank blocked on the same fault reaches its own deadline and prints
// its own view within a second or two of the others.
//
// A waiter that can cancel what it waits for (NcclComm: ncclCommAbort stops the kernels stuck on
// a dead peer) polls instead of blocking: it declares its wait kPolled, asks overdue() while
// polling and, once it is, calls expire(abort), which prints the same report, runs `abort` and ends
// the process with the same exit status. The watchdog thread gives such a waiter kPolledGrace
// seconds more before it ends the process itself (a waiter stuck inside a library call).
//
// One per process, on purpose: it must see every communicator's operations (and the checkpoint's
// parallel HDF5 calls), which no single Comm owns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace kl {

struct CommOp {
  uint64_t seq = 0;  // 0: none yet
  std::string kind;
  int peer = -1;  // -1: a collective
  int64_t bytes = 0;
};

class Watchdog {
 public:
  static Watchdog& get();
  ~Watchdog();

  // Starts watching with this deadline (seconds; 0 turns it off). `rank` labels the report.
  void arm(double timeout_s, int rank);

  // Numbers and records an operation that has just started; returns its number.
  uint64_t started(const std::string& kind, int peer, int64_t bytes);
  void completed(uint64_t seq);

  enum Wait { kBlocking, kPolled };
  static constexpr double kPolledGrace = 2.0;  // seconds

  // While one lives, the calling thread is blocked waiting for operation `seq`.
  class Blocked {
   public:
    explicit Blocked(uint64_t seq, Wait wait = kBlocking);
    ~Blocked();
    Blocked(const Blocked&) = delete;
    Blocked& operator=(const Blocked&) = delete;
  };

  // Whether the current wait has passed the deadline (never while disarmed).
  bool overdue() const;
  // For a kPolled waiter that is overdue: prints this rank's report, runs `abort`, ends the process
  // with kExitCommTimeout.
  [[noreturn]] void expire(const std::function<void()>& abort);

  std::string report() const;  // the last started, last completed and the awaited operation

  // Runs `call`, a blocking call that waits for peers with no request to wait on (MPI_Init,
  // communicator creation, MPI_Finalize), as one watched operation.
  template <class Call>
  void watch_call(const char* kind, Call&& call) {
    const uint64_t seq = started(kind, -1, 0);
    {
      Blocked blocked(seq);
      call();
    }
    completed(seq);
  }

 private:
  Watchdog() = default;
  void watch();
  double waited_locked() const;  // seconds the current wait has lasted
  void print_locked(double waited);  // the report, once per process
  [[noreturn]] static void end_job();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
  bool stopping_ = false;
  double timeout_s_ = 0;
  int rank_ = 0;
  uint64_t next_seq_ = 1;
  std::map<uint64_t, CommOp> open_;  // started, not yet completed
  CommOp last_started_, last_completed_, awaited_;
  bool blocked_ = false;
  Wait wait_ = kBlocking;
  bool printed_ = false;
  std::chrono::steady_clock::time_point blocked_since_;
};

}  // namespace kl
