#include "src/train/checkpoint_state.h"

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <span>

#include "src/checkpoint/checkpoint.h"
#include "src/util/error.h"

namespace kl {

std::vector<BufferRange> CheckpointState::write_ranges() const {
  if (sync_.zero()) return sync_.shard();  // the optimizer's pieces: its moments hold exactly these
  if (comms_.dp.rank() == 0) return sync_.shard();  // the whole buffer
  return {};
}

void CheckpointState::reserve() {
  if (params_) return;
  int64_t n = 0;
  for (const BufferRange& range : write_ranges()) n += range.size();
  VectorOps<float>& ops = worker_.ops();
  params_ = ops.alloc_host(n);  // zeroed (so touched), page-locked for a GPU
  exp_avg_ = ops.alloc_host(n);
  exp_avg_sq_ = ops.alloc_host(n);
}

checkpoint::RankState CheckpointState::begin_snapshot() {
  reserve();
  {
    const std::lock_guard<std::mutex> lock(copy_mutex_);
    copying_ = true;
  }
  checkpoint::RankState s;
  s.table = &worker_.table();
  s.params = params_->span();
  s.exp_avg = exp_avg_->span();
  s.exp_avg_sq = exp_avg_sq_->span();
  s.duplicate = worker_.duplicate_range();
  s.writes = write_ranges();
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
  // The ranges written are the optimizer's pieces (or none), whose moments lie one after the other.
  int64_t local = 0;
  for (const BufferRange& range : write_ranges()) {
    ops.download(worker_.params().subspan(static_cast<size_t>(range.begin), static_cast<size_t>(range.size())),
                 params_->span().data() + local);
    local += range.size();
  }
  if (local > 0) {
    ops.download(optimizer_.exp_avg(), exp_avg_->span().data());
    ops.download(optimizer_.exp_avg_sq(), exp_avg_sq_->span().data());
  }
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
  int64_t local = 0;  // the optimizer's pieces lie one after the other in its moments
  for (const BufferRange& piece : optimizer_.pieces()) {
    const auto at = [&](std::span<float> moments) {
      return moments.subspan(static_cast<size_t>(local), static_cast<size_t>(piece.size()));
    };
    ops.upload(whole.exp_avg.data() + piece.begin, at(optimizer_.exp_avg()));
    ops.upload(whole.exp_avg_sq.data() + piece.begin, at(optimizer_.exp_avg_sq()));
    local += piece.size();
  }
  worker_.params_changed();
}

}  // namespace kl
