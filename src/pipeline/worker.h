// What one rank computes in a training step: its pipeline stage (the whole model when pp = 1) on its
// backend, run by the engine through the schedule, whose ReduceGrads and OptimizerStep execute the
// hooks the rank's trainer supplies (src/train/trainer.cpp). The trainer sees the stage's flat fp32
// master parameters and gradients through this interface, in the backend's memory, with the
// operations on them that ops() provides.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "comm/train_comms.h"
#include "models/block.h"
#include "models/params.h"
#include "models/vector_ops.h"
#include "src/config/config.h"
#include "src/data/dataset.h"
#include "src/pipeline/engine.h"

namespace kl {

// A rank's part of one step.
struct StepWork {
  double loss = 0;        // this rank's share of the step's mean loss (summed over ranks: the loss)
  double p2p_wait_s = 0;  // blocked on pipeline messages
  double activation_bytes = 0;  // activation memory held at the step's peak
};

class Worker {
 public:
  virtual ~Worker() = default;
  virtual const ParamTable& table() const = 0;
  // The master parameters and gradients, in ops()' memory.
  virtual std::span<float> params() = 0;
  virtual std::span<float> grads() = 0;
  virtual VectorOps<float>& ops() = 0;
  // The groups that move params() and grads() (NCCL for a GPU run, else the host groups).
  virtual const TrainComms& comms() const = 0;
  // After params() changed (an update, a gather, a restore).
  virtual void params_changed() = 0;
  // Whether the training forward pass reads params() itself (not a copy params_changed() makes), so
  // that parameters may still be arriving when it starts (StepHooks::needed).
  virtual bool forward_reads_params() const { return false; }

  // Step `step` (0-based): zeroes grads(), accumulates the gradient of this rank's share of the
  // global batch, and runs `hooks` at ReduceGrads and OptimizerStep.
  virtual StepWork step(const TokenDataset& data, int64_t step, const pipeline::StepHooks& hooks) = 0;

  // Sum over evaluation windows [begin, begin + count) of `total` of their mean losses, without
  // dropout; ranks that compute no loss (pipeline stages before the last) return 0.
  virtual double evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total) = 0;

  // Sampling, collective over the pipeline: a forward pass without dropout of one window of seq_len
  // tokens (read on the first stage). Returns, on the last stage, the logits of the true vocabulary
  // that follow the token at `position`; empty on the others.
  virtual std::vector<float> window_logits(std::span<const int32_t> window, int position) = 0;

  // Evaluation passes treat block `layer` as removed, its input passed on (-1: none).
  virtual void skip_block(int layer) = 0;

  // While set, training passes add their blocks' measurements to `stats` (by global block index).
  virtual void collect(StreamStats* stats) = 0;

  // Gradient elements [first, second) that another rank holds too (a tied embedding's second
  // copy): left out of the global norm so that each element counts once.
  virtual std::pair<int64_t, int64_t> duplicate_range() const { return {0, 0}; }
  // The sum of a tied embedding's gradient copies between the first and the last stage (ReduceGrads).
  virtual void sum_tied_copies() {}
  // Collective: KL_CHECKs that such copies still hold identical values.
  virtual void check_copies_agree(int64_t /*step*/) {}

  // Every parameter of the model in the whole model's flat layout (models/params.h), on the rank
  // that leads the pipeline (stage 0); other ranks take part and may get an empty vector.
  virtual std::vector<float> global_params() = 0;

  virtual std::string describe() const = 0;
};

// The worker of this rank: its stage of config's pipeline on the CPU, or on the GPU with
// run.device = cuda (which builds its NCCL communicators over `comms`' host groups).
std::unique_ptr<Worker> make_worker(const Config& config, const TrainComms& comms);

// Throws UserError when config's backend cannot run here (run.device = cuda in a build without the
// CUDA backend, or on a machine without a GPU): for every rank to agree on before any collective.
void check_backend(const Config& config);

}  // namespace kl
