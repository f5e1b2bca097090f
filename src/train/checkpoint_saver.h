// Saving checkpoints, with training stopped for as little as possible (checkpoint.async).
//
// A save is the phases of src/checkpoint/checkpoint.h under the commit protocol of
// src/checkpoint/store.h. Each rank's thread of its own (made once with the saver, waiting between
// saves; it never calls MPI, initialised MPI_THREAD_FUNNELED) first copies the rank's share of the
// state into host memory while the next step's passes run (the next optimizer update waits for that
// copy: CheckpointState::fence), then does the file work of a phase, and at each step boundary the
// training threads vote (one small reduction) on whether every rank's part of the phase is done;
// when it is, they take the collective step into the next:
//   creating: rank 0 makes step_N.tmp/ and the file (serial HDF5), and writes its own pieces;
//   writing:  the offsets broadcast, every other rank writes its pieces (pwrite, CRC-32, fsync);
//   sealing:  the pieces' checksums gathered, rank 0 combines them, seals the file and commits
//             (rename, `latest`).
// In a world of one rank there is nothing to exchange between the phases: the writer runs them back
// to back (sealing only if training has not failed meanwhile), so that the save is done as soon as
// its work is, not at the second step boundary after.
// At most one save is in flight: the next save, a preemption, the end of training and a rollback
// wait for it (the same phases, waited for at once). If training fails meanwhile, the destructor
// waits for the running phase and publishes nothing: `latest` keeps naming the previous checkpoint.
//
// Synchronously (checkpoint.async = false) the phases run one after the other on the training
// thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "comm/comm.h"
#include "src/checkpoint/checkpoint.h"
#include "src/checkpoint/store.h"
#include "src/train/checkpoint_state.h"

namespace kl {

class CheckpointSaver {
 public:
  // `last`: the checkpoint the run resumed from, if any.
  CheckpointSaver(const checkpoint::Store& store, CheckpointState& state, std::ostream& progress,
                  std::optional<std::string> last);
  ~CheckpointSaver();
  CheckpointSaver(const CheckpointSaver&) = delete;
  CheckpointSaver& operator=(const CheckpointSaver&) = delete;

  // Collective: saves the state at `run_state.step` (the header's run state, the same on every
  // rank). With checkpoint.async and without `wait`, returns once the write runs in the background.
  void save(const checkpoint::Header& run_state, bool wait);
  // Collective, at each step boundary while a save is in flight: publishes it once every rank's
  // write is done.
  void poll();
  // Collective: waits for the save in flight, if any, and publishes it.
  void wait();
  bool in_flight() const { return phase_ != Phase::kIdle; }
  // The newest checkpoint file this run published or resumed from (what a rollback returns to).
  const std::optional<std::string>& last() const { return last_; }

 private:
  enum class Phase { kIdle, kCreating, kWriting, kSealing };
  // Runs `task` (this rank's file work of a phase) on the writer thread, or here when synchronous.
  void launch(std::function<void()> task);
  void join();     // this rank's task done; rethrows its error
  void write_loop();  // the writer thread: one task at a time, until the saver ends
  void run(const std::function<void()>& task);  // runs it, keeps its error, then marks it done
  // The saver is being destroyed without waiting (training failed): a save must not be published.
  bool cancelled();
  // Rank 0, once every rank's part is durable (`all`: every rank's regions): finish_file, commit.
  void seal(std::vector<checkpoint::Region> all);
  void advance();  // collective, once every rank's task is done: into the next phase
  void report();   // the published save's line in the progress output

  const checkpoint::Store& store_;
  CheckpointState& state_;
  Comm& world_;
  std::ostream& progress_;
  std::optional<std::string> last_;
  bool async_;
  int keep_;

  Phase phase_ = Phase::kIdle;
  checkpoint::RankState mine_;  // the snapshot
  checkpoint::FilePlan plan_;
  // The writer thread, made once (with checkpoint.async) and kept: it waits for a task.
  std::thread writer_;
  std::mutex mutex_;
  std::condition_variable wake_;   // a task (or the end) for the writer
  std::condition_variable ended_;  // the writer's task has ended
  std::function<void()> task_;     // the next task, taken by the writer
  bool stopping_ = false;
  std::atomic<bool> done_{true};  // this rank's task has ended (with or without error)
  std::exception_ptr error_;
  std::vector<checkpoint::Region> regions_;  // what this rank wrote
  double stall_s_ = 0;     // the training thread's time in this save so far
  double started_at_ = 0;  // when the save began
  double fence_before_ = 0;  // the state's fence_wait_s() when the save began
};

}  // namespace kl
