#include "src/train/checkpoint_saver.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "src/checkpoint/h5.h"


namespace kl {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Adds the time from its construction to its destruction to `total`.
struct Stopwatch {
  double& total;
  double start = now_s();
  ~Stopwatch() { total += now_s() - start; }
};

}  // namespace

CheckpointSaver::CheckpointSaver(const checkpoint::Store& store, CheckpointState& state, std::ostream& progress,
                                 std::optional<std::string> last)
    : store_(store),
      state_(state),
      world_(state.comms().world),
      progress_(progress),
      last_(std::move(last)),
      async_(state.config().checkpoint.async),
      keep_(state.config().checkpoint.keep) {
  state_.reserve();  // the snapshot's memory, touched now rather than during the first save
  if (async_) writer_ = std::thread([this] { write_loop(); });
}

CheckpointSaver::~CheckpointSaver() {
  if (!writer_.joinable()) return;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();  // after the task under way, which seals nothing it has not begun to (cancelled())
}

void CheckpointSaver::write_loop() {
  // At the training threads' priority, not behind them: at nice 10 on two busy cores the writer got
  // its cycles only once the next save stopped training to wait for it (bench/checkpoint_stall.sh,
  // docs/performance.md); the work is the same either way, and done sooner this way.
  try {
    h5::warm_up();  // before any task: HDF5's first use off the first save's path
  } catch (...) {
    // Only a head start: a library that fails here fails the first save, which reports it.
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return task_ || stopping_; });
    if (!task_) return;
    const std::function<void()> task = std::exchange(task_, nullptr);
    lock.unlock();
    run(task);
    lock.lock();
    ended_.notify_all();
  }
}

void CheckpointSaver::run(const std::function<void()>& task) {
  try {
    task();
  } catch (...) {
    error_ = std::current_exception();
  }
  done_ = true;
}

void CheckpointSaver::launch(std::function<void()> task) {
  done_ = false;
  if (!async_) return run(task);
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    task_ = std::move(task);
  }
  wake_.notify_one();
}

void CheckpointSaver::join() {
  if (async_) {
    std::unique_lock<std::mutex> lock(mutex_);
    ended_.wait(lock, [this] { return done_.load(); });
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

bool CheckpointSaver::cancelled() {
  const std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

void CheckpointSaver::seal(std::vector<checkpoint::Region> all) {
  checkpoint::finish_file(plan_, std::move(all));
  store_.commit(plan_.index.header.step, keep_);
}

void CheckpointSaver::save(const checkpoint::Header& run_state, bool wait) {
  this->wait();
  started_at_ = now_s();
  stall_s_ = 0;
  {
    Stopwatch watch{stall_s_};
    const int64_t step = run_state.step;
    mine_ = state_.begin_snapshot();
    fence_before_ = state_.fence_wait_s();
    const std::string dir = (std::filesystem::path(store_.dir()) / (checkpoint::Store::step_name(step) + ".tmp")).string();
    plan_ = checkpoint::plan_file(dir + "/" + checkpoint::kFileName, state_.header(run_state), state_.config().model);
    regions_.clear();
    // A world of one rank has nothing to exchange between the phases: its writer seals at once.
    const bool alone = world_.size() == 1;
    phase_ = alone ? Phase::kSealing : Phase::kCreating;
    // The copy first (the next optimizer update waits for it), then rank 0 makes the file and
    // writes its own pieces; the others write theirs once they know the offsets.
    launch([this, step, alone] {
      state_.copy_snapshot(step);
      if (world_.rank() != 0) return;
      if (store_.begin(step) + "/" + checkpoint::kFileName != plan_.path) throw std::logic_error("checkpoint path");
      checkpoint::create_file(plan_);
      regions_ = checkpoint::write_pieces(plan_.path, checkpoint::pieces_of(plan_, mine_));
      if (alone && !cancelled()) seal(regions_);
    });
  }
  if (!async_ || wait) this->wait();
}

void CheckpointSaver::poll() {
  if (phase_ == Phase::kIdle) return;
  {
    Stopwatch watch{stall_s_};
    while (phase_ != Phase::kIdle && world_.all_reduce_sum(done_ ? 1.0 : 0.0) == world_.size()) advance();
  }
  if (phase_ == Phase::kIdle) report();
}

void CheckpointSaver::wait() {
  if (phase_ == Phase::kIdle) return;
  {
    Stopwatch watch{stall_s_};
    while (phase_ != Phase::kIdle) advance();
  }
  report();
}

void CheckpointSaver::report() {
  const double fenced = async_ ? state_.fence_wait_s() - fence_before_ : 0.0;  // counted in the step's time
  const int64_t step = plan_.index.header.step;
  double bytes = 0;
  for (const auto& [name, entry] : plan_.index.tensors) bytes += double(entry.bytes);
  const double seconds = now_s() - started_at_;
  char line[256];
  std::snprintf(line, sizeof line,
                "checkpoint: step %lld saved to %s (%.1f MB in %.2f s, %.0f MB/s; training stalled %.3f s%s, "
                "of which waiting for the snapshot's copy %.3f s)",
                static_cast<long long>(step), (store_.dir() + "/" + checkpoint::Store::step_name(step)).c_str(),
                bytes / 1e6, seconds, bytes / 1e6 / seconds, stall_s_ + fenced, async_ ? " by the async save" : "", fenced);
  progress_ << line << "\n" << std::flush;
}

void CheckpointSaver::advance() {
  join();
  switch (phase_) {
    case Phase::kCreating:
      checkpoint::share_offsets(plan_, world_);
      if (world_.rank() != 0) {
        launch([this] { regions_ = checkpoint::write_pieces(plan_.path, checkpoint::pieces_of(plan_, mine_)); });
      }
      phase_ = Phase::kWriting;
      return;
    case Phase::kWriting: {
      // Every rank's part is durable: rank 0 seals and publishes.
      std::vector<checkpoint::Region> all = checkpoint::gather_regions(regions_, world_);
      if (world_.rank() == 0) {
        launch([this, all = std::move(all)]() mutable { seal(std::move(all)); });
      }
      phase_ = Phase::kSealing;
      return;
    }
    case Phase::kSealing:
      phase_ = Phase::kIdle;
      last_ = (std::filesystem::path(store_.dir()) / checkpoint::Store::step_name(plan_.index.header.step) /
               checkpoint::kFileName).string();
      return;
    case Phase::kIdle:
      return;
  }
}

}  // namespace kl
