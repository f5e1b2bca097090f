#include "comm/shard_reducer.h"

#include <chrono>

#include "comm/grad_reducer.h"
#include "src/util/error.h"

namespace kl {
namespace {

std::vector<BufferRange> buckets_of(int64_t size, int ranks, int64_t bucket_elements) {
  KL_CHECK(size % ranks == 0, "ZeRO-1: the flat buffer must be padded to a multiple of dp");
  const std::vector<int64_t> begins = bucket_begins(size, bucket_elements, ranks);
  std::vector<BufferRange> buckets;
  for (size_t k = 0; k < begins.size(); ++k) {
    buckets.push_back({begins[k], k + 1 < begins.size() ? begins[k + 1] : size});
  }
  return buckets;
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

ShardReducer::ShardReducer(Comm& comm, std::span<float> grads, std::span<float> params,
                           std::span<float> shard_grads, int64_t bucket_elements)
    : comm_(comm), grads_(grads), params_(params), shard_grads_(shard_grads) {
  KL_CHECK(params.size() == grads.size(), "ZeRO-1: parameters and gradients differ in size");
  buckets_ = buckets_of(static_cast<int64_t>(grads.size()), comm.size(), bucket_elements);
  int64_t local = 0;
  for (const BufferRange& bucket : buckets_) {
    const int64_t slice = bucket.size() / comm.size();
    const int64_t begin = bucket.begin + slice * comm.rank();
    pieces_.push_back({begin, begin + slice});
    local_.push_back(local);
    local += slice;
  }
  KL_CHECK(local == static_cast<int64_t>(shard_grads.size()), "ZeRO-1: the shard buffer does not fit the pieces");
  gathered_ = buckets_.size();  // the parameters start whole (initialised or restored alike everywhere)
}

void ShardReducer::begin() {
  KL_CHECK(reduced_ == 0 || reduced_ == buckets_.size(), "a step's reduce-scatters were left running");
  reductions_.clear();
  reduced_ = 0;
}

void ShardReducer::ready_from(int64_t offset) {
  while (reduced_ < buckets_.size()) {
    const size_t k = buckets_.size() - 1 - reduced_;
    const BufferRange& bucket = buckets_[k];
    if (bucket.begin < offset) break;
    const auto at = [](std::span<float> s, int64_t begin, int64_t n) {
      return s.subspan(static_cast<size_t>(begin), static_cast<size_t>(n));
    };
    reductions_.push_back(comm_.reduce_scatter_sum(at(grads_, bucket.begin, bucket.size()),
                                                   at(shard_grads_, local_[k], pieces_[k].size())));
    ++reduced_;
  }
  for (auto& handle : reductions_) handle->test();
}

double ShardReducer::finish() {
  const auto start = Clock::now();
  ready_from(0);
  for (auto& handle : reductions_) handle->wait();
  return seconds_since(start);
}

void ShardReducer::start_gather() {
  KL_CHECK(gathered_ == buckets_.size(), "ZeRO-1: gathers started while the last ones run");
  gathers_.clear();
  for (size_t k = 0; k < buckets_.size(); ++k) {
    const BufferRange& bucket = buckets_[k];
    const std::span<float> whole = params_.subspan(static_cast<size_t>(bucket.begin), static_cast<size_t>(bucket.size()));
    const std::span<const float> mine =
        params_.subspan(static_cast<size_t>(pieces_[k].begin), static_cast<size_t>(pieces_[k].size()));
    gathers_.push_back(comm_.all_gather(mine, whole));  // in place: this rank's piece is its chunk
  }
  gathered_ = 0;
}

double ShardReducer::need_params(int64_t end) {
  if (gathered_ == buckets_.size()) return 0.0;
  const auto start = Clock::now();
  while (gathered_ < buckets_.size() && buckets_[gathered_].begin < end) gathers_[gathered_++]->wait();
  for (size_t k = gathered_; k < gathers_.size(); ++k) gathers_[k]->test();
  if (gathered_ == buckets_.size()) gathers_.clear();
  return seconds_since(start);
}

}  // namespace kl
