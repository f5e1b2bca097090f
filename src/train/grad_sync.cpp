#include "src/train/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace kl {

GradSync::GradSync(const Config& c, Comm& dp, Worker& worker)
    : c_(c), dp_(dp), worker_(worker), zero_(c.parallel.zero == 1 && dp.size() > 1) {
  const auto size = static_cast<int64_t>(worker.params().size());
  const auto bucket = std::max<int64_t>(static_cast<int64_t>(c.parallel.bucket_mb * (1 << 20) / sizeof(float)), 1);
  if (zero_) {
    grad_shard_ = worker.ops().alloc(size / dp.size());
    sharded_ = std::make_unique<ShardReducer>(dp, worker.grads(), worker.params(), grad_shard_->span(), bucket);
    shard_ = sharded_->pieces();
    // A forward pass reading the master parameters directly may wait for them bucket by bucket;
    // one reading a converted copy (a GPU's bf16 weights) needs them whole before the conversion.
    defer_gather_ = c.parallel.overlap && worker.forward_reads_params();
  } else {
    shard_ = {BufferRange{0, size}};
    if (dp.size() > 1) reducer_ = std::make_unique<GradReducer>(dp, worker.grads(), bucket);
  }
}

int GradSync::buckets() const { return reducer_ ? reducer_->buckets() : sharded_ ? sharded_->buckets() : 0; }

int64_t GradSync::bytes_per_step() const {
  return dp_.size() == 1 ? 0 : static_cast<int64_t>(worker_.grads().size_bytes()) * (zero_ ? 2 : 1);
}

GradientsReady GradSync::ready() {
  if (!c_.parallel.overlap) return {};
  if (reducer_) return [this](int64_t offset) { reducer_->ready_from(offset); };
  if (sharded_) return [this](int64_t offset) { sharded_->ready_from(offset); };
  return {};
}

ParamsNeeded GradSync::needed() {
  if (!defer_gather_) return {};
  return [this](int64_t end) { forward_wait_ += sharded_->need_params(end); };
}

void GradSync::begin() {
  if (reducer_) reducer_->begin();
  if (sharded_) sharded_->begin();
}

std::span<float> GradSync::owned_grads() { return zero_ ? grad_shard_->span() : worker_.grads(); }

double GradSync::finish() {
  if (!reducer_ && !sharded_) return 0.0;
  // Without overlap (a baseline for bench/dp_scaling.sh), line the ranks up first so that the
  // wait measures the reductions alone, not one rank waiting for the other's backward pass.
  if (!c_.parallel.overlap) dp_.barrier();
  return reducer_ ? reducer_->finish() : sharded_->finish();
}

double GradSync::gather_params() {
  if (!zero_) return 0.0;
  if (!c_.parallel.overlap) dp_.barrier();  // as in finish(): the wait measures the gathers alone
  const auto start = std::chrono::steady_clock::now();
  sharded_->start_gather();
  if (defer_gather_) return 0.0;  // the next forward pass waits, and take_forward_wait() reports it
  wait_params();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double GradSync::wait_params() {
  if (!sharded_) return 0.0;
  return sharded_->need_params(static_cast<int64_t>(worker_.params().size()));
}

double GradSync::take_forward_wait() { return std::exchange(forward_wait_, 0.0); }

}  // namespace kl
