#include "comm/grad_reducer.h"

#include <algorithm>
#include <chrono>

#include "src/util/error.h"

namespace kl {

std::vector<int64_t> bucket_begins(int64_t size, int64_t bucket_elements, int64_t multiple) {
  KL_CHECK(bucket_elements > 0 && multiple > 0, "bucket size must be positive");
  const auto round_up = [multiple](int64_t n) { return (n + multiple - 1) / multiple * multiple; };
  const int64_t full = round_up(bucket_elements);
  std::vector<int64_t> begins{0};
  for (int64_t b = round_up(std::max<int64_t>(1, bucket_elements / 4)); b < size; b += full) begins.push_back(b);
  return begins;
}

GradReducer::GradReducer(Comm& comm, std::span<float> grads, int64_t bucket_elements)
    : comm_(comm), grads_(grads) {
  const std::vector<int64_t> begins = bucket_begins(static_cast<int64_t>(grads.size()), bucket_elements);
  bucket_begin_.assign(begins.rbegin(), begins.rend());  // launch order: from the end
}

void GradReducer::begin() {
  KL_CHECK(started_ == 0 || started_ == bucket_begin_.size(), "a step's reductions were left running");
  handles_.clear();
  started_ = 0;
}

void GradReducer::ready_from(int64_t offset) {
  while (started_ < bucket_begin_.size() && bucket_begin_[started_] >= offset) {
    const int64_t begin = bucket_begin_[started_];
    const int64_t end = started_ == 0 ? static_cast<int64_t>(grads_.size()) : bucket_begin_[started_ - 1];
    handles_.push_back(comm_.all_reduce_sum(grads_.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin))));
    ++started_;
  }
  for (auto& handle : handles_) handle->test();
}

double GradReducer::finish() {
  const auto start = std::chrono::steady_clock::now();
  ready_from(0);
  for (auto& handle : handles_) handle->wait();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace kl
