// The training loop of one rank in a data-parallel group: data, model, optimizer, gradient
// reduction, validation, metrics and progress.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <vector>

#include "comm/comm.h"
#include "comm/train_comms.h"
#include "src/config/config.h"
#include "src/train/sampler.h"

namespace kl {

struct TrainSummary {
  std::vector<double> losses;  // training loss per step run (of the global batch, same on every rank)
  double final_val_loss = 0;
  double unigram_entropy = 0;  // of the validation data, in nats (world rank 0 only)
  // Bytes of text per validation token (src/data/data_info.h), when known: bits per byte =
  // nats per token / ln 2 / this (world rank 0 only).
  std::optional<double> val_bytes_per_token;
  double tokens_per_s = 0;     // median over the run's steps (the first excluded when possible)
  int64_t first_step = 0;      // resumed from a checkpoint of this step (0: a fresh start)
  bool preempted = false;      // stopped by SIGTERM/SIGUSR1 after saving a checkpoint
  // After the last step, with a tokenizer for the data: "PROMPT | CONTINUATION", the start of the
  // first validation window and what the final model makes of it (run.sample_every's settings;
  // world rank 0 only).
  std::string final_sample;
};

// Faults a test asks for (src/main.cpp reads them from KL_INJECT_NAN=RANK:STEP and
// KL_INJECT_SPIKE=RANK:STEP[:VALUE[:repeat]]): world rank `nan_rank`'s gradient gets a NaN at step
// `nan_step` (1-based), before any reduction sees it; world rank `spike_rank`'s gets `spike_value`
// added to one element at step `spike_step` (a finite gradient spike), once per process, or each
// time the step runs with `spike_repeat` (a spike no batch avoids).
struct FaultInjection {
  int nan_rank = -1;
  int64_t nan_step = 0;
  int spike_rank = -1;
  int64_t spike_step = 0;
  float spike_value = 1000.0f;
  bool spike_repeat = false;
};

// Trains `config` as one pipeline stage of one data-parallel replica: from a fresh initialisation
// or, per checkpoint.resume, from a checkpoint; saves checkpoints per checkpoint.every, at the end
// (or at run.stop_after) and when a preemption signal arrives. World rank 0 writes
// <run.dir>/config.ini and metrics.jsonl and the progress lines.
TrainSummary train(const Config& config, const TrainComms& comms, std::ostream& progress,
                   const FaultInjection& faults = {});

// The validation loss of a checkpoint (any layout's) with this config's model, data and layout.
double evaluate_checkpoint(const Config& config, const TrainComms& comms, const std::string& path,
                           std::ostream& progress);

// The lesion study: the validation loss of a checkpoint whole (element 0), then with each block
// removed in turn (element 1 + l: block l skipped, its identity path kept). Without
// `every_block`, only element 0.
std::vector<double> lesion_study(const Config& config, const TrainComms& comms, const std::string& path,
                                 std::ostream& progress, bool every_block);

// `kilolayer sample`: options.tokens tokens after `prompt` from the checkpoint at `path` (any
// layout's) on this config's layout, decoded with the training data's tokenizer; the text on every
// rank. Bad options, a prompt longer than model.seq_len, a missing tokenizer or checkpoint: one
// message (CollectiveError) before any work.
std::string sample_checkpoint(const Config& config, const TrainComms& comms, const std::string& path,
                              const std::string& prompt, const SampleOptions& options, std::ostream& progress);

// Without pipeline parallelism: trains `config` from a fresh initialisation. `dp` is this rank's data-parallel group (a SoloComm
// for one process): each rank takes a disjoint share of every global batch, gradients are summed
// over the group, and all ranks keep identical parameters. Rank 0 of the group writes
// <run.dir>/config.ini and metrics.jsonl and the progress lines to `progress`. Throws UserError on
// bad data or an unwritable run directory.
TrainSummary train(const Config& config, Comm& dp, std::ostream& progress);

// Sets OpenMP's thread count from run.threads (0: every core) and returns it.
int set_threads(int requested);

}  // namespace kl
