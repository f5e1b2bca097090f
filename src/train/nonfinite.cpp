#include "src/train/nonfinite.h"

#include <cmath>
#include <string>

#include "src/util/error.h"

namespace kl {

bool NonfinitePolicy::admit(double loss, double grad_norm, int64_t step_number) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    consecutive_ = 0;
    return true;
  }
  ++consecutive_;
  ++skipped_;
  const std::string what = "training diverged at step " + std::to_string(step_number) + ": loss " +
                           std::to_string(loss) + ", gradient norm " + std::to_string(grad_norm);
  if (t_.nonfinite == OnNonfinite::kAbort) {
    throw CollectiveError(what + " (train.nonfinite = abort; lower train.lr or raise train.warmup)");
  }
  if (consecutive_ > t_.max_skips) {
    throw CollectiveError(what + "; " + std::to_string(consecutive_) +
                          " step(s) in a row skipped, more than train.max_skips = " + std::to_string(t_.max_skips) +
                          " (lower train.lr or raise train.warmup)");
  }
  return false;
}

}  // namespace kl
