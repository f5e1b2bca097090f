// A rank's training state in and out of a checkpoint (src/checkpoint/checkpoint.h): the worker's
// parameters and the optimizer's moments, whole-buffer and in host memory whatever the backend,
// gathered over the data-parallel group under ZeRO-1 (whose optimizer holds a shard).
#pragma once

#include <cstdint>
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

  // Collective over `world`: this rank's share of the state into the checkpoint file `path`, with
  // `header`'s step and run state (data, spike_window, skipped_batches; the same on every rank);
  // the rest of the header is filled here. Returns the bytes this rank wrote. Refuses (KL_CHECK)
  // non-finite parameters.
  int64_t save(const std::string& path, checkpoint::Header header, Comm& world);
  // This rank's tensors from the checkpoint file `path`, by global name.
  void restore(const std::string& path);

 private:
  const Config& c_;
  TrainComms comms_;
  Worker& worker_;
  AdamW<float>& optimizer_;
  const GradSync& sync_;
};

}  // namespace kl
