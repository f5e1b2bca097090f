// What a step does with non-finite values (train.nonfinite, train.max_skips): every rank reaches
// the same verdict (the loss and the norm it judges are reduced over every rank), then every rank
// skips the step together or the run stops with one message.
#pragma once

#include <cstdint>

#include "src/config/config.h"

namespace kl {

class NonfinitePolicy {
 public:
  explicit NonfinitePolicy(const TrainConfig& t) : t_(t) {}
  // Whether to apply step `step_number`'s update; throws CollectiveError to stop the run.
  bool admit(double loss, double grad_norm, int64_t step_number);
  int64_t skipped() const { return skipped_; }  // steps skipped so far

 private:
  const TrainConfig& t_;
  int64_t consecutive_ = 0, skipped_ = 0;
};

}  // namespace kl
