#include "src/train/grad_sync.h"

#include <algorithm>
#include <chrono>

namespace kl {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

GradSync::GradSync(const Config& c, Comm& dp, Worker& worker)
    : c_(c), dp_(dp), worker_(worker), zero_(c.parallel.zero == 1 && dp.size() > 1) {
  const auto padded = static_cast<int64_t>(worker.params().size());
  shard_ = zero_ ? Shard{padded / dp.size() * dp.rank(), padded / dp.size() * (dp.rank() + 1)} : Shard{0, padded};
  if (zero_) grad_shard_ = worker.ops().alloc(shard_.end - shard_.begin);
  if (dp.size() > 1 && !zero_) {
    const auto bucket = static_cast<int64_t>(c.parallel.bucket_mb * (1 << 20) / sizeof(float));
    reducer_ = std::make_unique<GradReducer>(dp, worker.grads(), std::max<int64_t>(bucket, 1));
  }
}

int64_t GradSync::bytes_per_step() const {
  return dp_.size() == 1 ? 0 : static_cast<int64_t>(worker_.grads().size_bytes()) * (zero_ ? 2 : 1);
}

GradientsReady GradSync::ready() {
  if (!reducer_ || !c_.parallel.overlap) return {};
  return [this](int64_t offset) { reducer_->ready_from(offset); };
}

void GradSync::begin() {
  if (reducer_) reducer_->begin();
}

std::span<float> GradSync::owned_grads() { return zero_ ? grad_shard_->span() : worker_.grads(); }

double GradSync::finish() {
  if (reducer_) {
    // Without overlap (a baseline for bench/dp_scaling.sh), line the ranks up first so that the
    // wait measures the reductions alone, not one rank waiting for the other's backward pass.
    if (!c_.parallel.overlap) dp_.barrier();
    return reducer_->finish();
  }
  if (!zero_) return 0.0;
  const auto start = Clock::now();
  dp_.reduce_scatter_sum(worker_.grads(), grad_shard_->span())->wait();
  return seconds_since(start);
}

double GradSync::gather_params() {
  if (!zero_) return 0.0;
  const auto start = Clock::now();
  const auto params = worker_.params();
  dp_.all_gather(params.subspan(static_cast<size_t>(shard_.begin), static_cast<size_t>(shard_.end - shard_.begin)),
                 params)->wait();
  return seconds_since(start);
}

}  // namespace kl
