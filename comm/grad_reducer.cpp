#include "comm/grad_reducer.h"

#include <algorithm>
#include <chrono>

#include "src/util/error.h"

namespace kl {

GradReducer::GradReducer(Comm& comm, std::span<float> grads, int64_t bucket_elements)
    : comm_(comm), grads_(grads) {
  KL_CHECK(bucket_elements > 0, "bucket size must be positive");
  // Boundaries from the start: a small bucket first, then full ones. The bucket at the start is the
  // last to become ready (the embeddings finish the backward pass) and nothing is left to hide its
  // reduction behind, so it is kept to a quarter of the others.
  const auto size = static_cast<int64_t>(grads.size());
  std::vector<int64_t> begins{0};
  for (int64_t b = std::max<int64_t>(1, bucket_elements / 4); b < size; b += bucket_elements) begins.push_back(b);
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
