// A rank's training state in and out of a checkpoint (src/checkpoint/checkpoint.h): the worker's
// parameters and the optimizer's moments, in host memory whatever the backend. Under ZeRO-1 each
// rank of the data-parallel group writes its own shard of every tensor (the optimizer holds only
// that shard's moments), without gathering; otherwise the group's first rank writes everything.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <memory>
#include <string>

#include "comm/train_comms.h"
#include "src/checkpoint/checkpoint.h"
#include "src/config/config.h"
#include "src/pipeline/worker.h"
#include "src/train/grad_sync.h"
#include "src/train/optimizer.h"

namespace kl {

class CheckpointState {
 public:
  // `comms`: the rank's host groups.
  CheckpointState(const Config& c, const TrainComms& comms, Worker& worker, AdamW<float>& optimizer,
                  const GradSync& sync)
      : c_(c), comms_(comms), worker_(worker), optimizer_(optimizer), sync_(sync) {}

  // The elements of the worker's table this rank writes: its ZeRO-1 shard (a piece per bucket),
  // everything on the group's first rank, or nothing.
  std::vector<BufferRange> write_ranges() const;
  // Allocates (and touches) the snapshot's host memory ahead of the first save.
  void reserve();
  // A snapshot in two halves, so that the copy need not stop training: only the optimizer update
  // changes the parameters and moments, so they may be copied while the next step's passes run.
  // begin_snapshot returns the host buffers (untouched until the next snapshot; a background write
  // reads them), still to be filled by copy_snapshot (on any thread), which throws
  // std::runtime_error on non-finite parameters (a checkpoint is never written from them). Every
  // optimizer update calls fence() first, which waits for a copy still under way.
  checkpoint::RankState begin_snapshot();
  void copy_snapshot(int64_t step);
  void fence();
  // The seconds fence() has waited, in all.
  double fence_wait_s() const { return fence_wait_s_; }
  // `run_state` (step, data, spike_window, skipped_batches: the same on every rank) completed
  // with the tokens seen, the config and the layout.
  checkpoint::Header header(checkpoint::Header run_state) const;
  const Config& config() const { return c_; }
  const TrainComms& comms() const { return comms_; }

  // This rank's tensors from the checkpoint file `path`, by global name.
  void restore(const std::string& path);

 private:
  const Config& c_;
  TrainComms comms_;
  Worker& worker_;
  AdamW<float>& optimizer_;
  const GradSync& sync_;
  // The snapshot: the write range of the parameters and of both moments, kept between saves.
  std::unique_ptr<VectorOps<float>::Buffer> params_, exp_avg_, exp_avg_sq_;
  std::mutex copy_mutex_;
  std::condition_variable copy_done_;
  bool copying_ = false;  // begun and not yet copied
  double fence_wait_s_ = 0;
};

}  // namespace kl
