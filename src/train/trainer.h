// The training loop of one process: data, model, optimizer, validation, metrics and progress.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <vector>

#include "src/config/config.h"

namespace kl {

struct TrainSummary {
  std::vector<double> losses;  // training loss per step
  double final_val_loss = 0;
  double unigram_entropy = 0;  // of the validation data, in nats
  double tokens_per_s = 0;     // median over the run's steps (the first excluded when possible)
};

// Trains `config` from a fresh initialisation, writing <run.dir>/config.ini and metrics.jsonl and
// progress lines to `progress`. Throws UserError on bad data or an unwritable run directory.
TrainSummary train(const Config& config, std::ostream& progress);

// Sets OpenMP's thread count from run.threads (0: every core) and returns it.
int set_threads(int requested);

}  // namespace kl
