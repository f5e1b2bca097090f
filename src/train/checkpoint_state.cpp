#include "src/train/checkpoint_state.h"

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <span>

#include "src/checkpoint/checkpoint.h"
#include "src/util/error.h"

namespace kl {

std::pair<int64_t, int64_t> CheckpointState::write_range() const {
  if (sync_.zero()) return {sync_.shard().begin, sync_.shard().end};
  if (comms_.dp.rank() == 0) return {0, static_cast<int64_t>(worker_.params().size())};
  return {0, 0};
}

void CheckpointState::reserve() {
  if (params_) return;
  const auto [begin, end] = write_range();
  VectorOps<float>& ops = worker_.ops();
  params_ = ops.alloc_host(end - begin);  // zeroed (so touched), page-locked for a GPU
  exp_avg_ = ops.alloc_host(end - begin);
  exp_avg_sq_ = ops.alloc_host(end - begin);
}

checkpoint::RankState CheckpointState::begin_snapshot() {
  reserve();
  {
    const std::lock_guard<std::mutex> lock(copy_mutex_);
    copying_ = true;
  }
  const auto [begin, end] = write_range();
  checkpoint::RankState s;
  s.table = &worker_.table();
  s.params = params_->span();
  s.exp_avg = exp_avg_->span();
  s.exp_avg_sq = exp_avg_sq_->span();
  s.duplicate = worker_.duplicate_range();
  s.writes = {begin, end};
  s.base = begin;
  return s;
}

void CheckpointState::copy_snapshot(int64_t step) {
  // Whatever happens, the fence opens: a failure is reported by the save, not by a hung update.
  struct Done {
    CheckpointState& state;
    ~Done() {
      const std::lock_guard<std::mutex> lock(state.copy_mutex_);
      state.copying_ = false;
      state.copy_done_.notify_all();
    }
  } done{*this};
  VectorOps<float>& ops = worker_.ops();
  const auto [begin, end] = write_range();
  const int64_t n = end - begin;
  const auto range = [&](std::span<float> whole, int64_t first) {
    return whole.subspan(static_cast<size_t>(begin - first), static_cast<size_t>(n));
  };
  // The optimizer's moments cover its shard (all of the buffer without ZeRO-1).
  const int64_t moments_first = sync_.shard().begin;
  ops.download(range(worker_.params(), 0), params_->span().data());
  ops.download(range(optimizer_.exp_avg(), moments_first), exp_avg_->span().data());
  ops.download(range(optimizer_.exp_avg_sq(), moments_first), exp_avg_sq_->span().data());
  // Skipped steps leave the parameters as they were, so this holds unless something is broken;
  // the save then fails before the checkpoint is published.
  double sum = 0;
  for (float x : params_->span()) sum += double(x) * x;
  if (!std::isfinite(sum)) {
    throw std::runtime_error("refusing to checkpoint non-finite parameters at step " + std::to_string(step));
  }
}

void CheckpointState::fence() {
  std::unique_lock<std::mutex> lock(copy_mutex_);
  if (!copying_) return;
  const auto start = std::chrono::steady_clock::now();
  copy_done_.wait(lock, [this] { return !copying_; });
  fence_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

checkpoint::Header CheckpointState::header(checkpoint::Header h) const {
  h.tokens_seen = h.step * c_.train.global_batch * int64_t{c_.model.seq_len};
  h.config = c_.to_ini();
  h.layout = "dp=" + std::to_string(comms_.dp.size()) + " pp=" + std::to_string(c_.parallel.pp) +
             " schedule=" + name_of(c_.parallel.schedule) + " virtual=" + std::to_string(c_.parallel.virtual_chunks) +
             " zero=" + std::to_string(c_.parallel.zero);
  return h;
}

void CheckpointState::restore(const std::string& path) {
  VectorOps<float>& ops = worker_.ops();
  const auto n = static_cast<int64_t>(worker_.params().size());
  const auto params = ops.alloc_host(n), m = ops.alloc_host(n), v = ops.alloc_host(n);
  checkpoint::RankState whole;
  whole.table = &worker_.table();
  whole.params = params->span();
  whole.exp_avg = m->span();
  whole.exp_avg_sq = v->span();
  checkpoint::read_tensors(path, whole);
  ops.upload(whole.params.data(), worker_.params());
  const auto& shard = sync_.shard();
  ops.upload(whole.exp_avg.data() + shard.begin, optimizer_.exp_avg());
  ops.upload(whole.exp_avg_sq.data() + shard.begin, optimizer_.exp_avg_sq());
  worker_.params_changed();
}

}  // namespace kl
