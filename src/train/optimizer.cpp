#include "src/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "src/util/error.h"

namespace kl {

double learning_rate(const TrainConfig& t, int64_t step) {
  if (step < t.warmup) return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup);
  if (t.schedule == LrSchedule::kConstant) return t.lr;
  if (t.schedule == LrSchedule::kInverseSqrt) {
    const double warmup = static_cast<double>(std::max<int64_t>(t.warmup, 1));
    return std::max(t.min_lr, t.lr * std::sqrt(warmup / static_cast<double>(step + 1)));
  }
  const int64_t horizon = t.decay_steps > 0 ? t.decay_steps : t.steps - t.warmup;
  const int64_t s = step - t.warmup;
  if (t.schedule == LrSchedule::kWsd) {
    const auto decaying = static_cast<int64_t>(std::llround(t.wsd_decay_fraction * static_cast<double>(horizon)));
    const int64_t decay_from = horizon - decaying;
    if (decaying <= 0 || s < decay_from) return t.lr;
    const double progress = std::min(static_cast<double>(s - decay_from + 1) / static_cast<double>(decaying), 1.0);
    return t.lr - (t.lr - t.min_lr) * progress;
  }
  if (horizon <= 1) return t.lr;
  const double progress = std::min(static_cast<double>(s) / static_cast<double>(horizon - 1), 1.0);  // 0 .. 1
  const double fall = t.schedule == LrSchedule::kLinear ? 1.0 - progress
                                                        : 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
  return t.min_lr + (t.lr - t.min_lr) * fall;
}

std::string schedule_change(const TrainConfig& before, const TrainConfig& after, int64_t steps_done) {
  for (int64_t step = 0; step < steps_done; ++step) {
    const double was = learning_rate(before, step), now = learning_rate(after, step);
    if (was == now) continue;
    char line[200];
    std::snprintf(line, sizeof line, "step %lld had learning rate %.6g, which this config gives as %.6g",
                  static_cast<long long>(step + 1), was, now);
    return line;
  }
  return "";
}

template <class T>
void clip_to_norm(VectorOps<T>& ops, std::span<T> grads, double norm, double clip) {
  // PyTorch's clip_grad_norm_: scale by clip / (norm + 1e-6) when that is below 1.
  const double factor = clip / (norm + 1e-6);
  if (clip > 0.0 && factor < 1.0) ops.scale(grads, factor);
}

template <class T>
double clip_grad_norm(VectorOps<T>& ops, std::span<T> grads, double clip) {
  const double norm = std::sqrt(ops.sum_squares(grads));
  clip_to_norm(ops, grads, norm, clip);
  return norm;
}

namespace {

int64_t total_size(const std::vector<BufferRange>& pieces) {
  int64_t n = 0;
  for (const BufferRange& piece : pieces) n += piece.size();
  return n;
}

}  // namespace

template <class T>
AdamW<T>::AdamW(const ParamTable& table, const TrainConfig& train, std::vector<BufferRange> pieces, VectorOps<T>& ops)
    : train_(train),
      pieces_(std::move(pieces)),
      local_size_(total_size(pieces_)),
      ops_(ops),
      m_(ops.alloc(local_size_)),
      v_(ops.alloc(local_size_)) {
  // Per piece, the table's tensors in offset order, clipped to the piece; the padding between two
  // tensors (zeros, with zero gradients) goes with the run before it, where AdamW leaves it zero.
  int64_t local = 0;
  for (const BufferRange& piece : pieces_) {
    for (const ParamSpec& spec : table.specs()) {
      const int64_t lo = std::max(spec.offset, piece.begin), hi = std::min(spec.offset + spec.numel(), piece.end);
      if (lo >= hi) continue;
      const Run run{local + lo - piece.begin, local + hi - piece.begin, lo, spec.decay, spec.lr_scale, spec.eps_scale};
      if (!runs_.empty() && runs_.back().same_update(run)) {
        runs_.back().end = run.end;
      } else {
        runs_.push_back(run);
      }
    }
    local += piece.size();
  }
}

template <class T>
void AdamW<T>::update(std::span<T> params, std::span<const T> grads, double lr, int64_t step) {
  KL_CHECK(static_cast<int64_t>(grads.size()) == local_size_ &&
               (pieces_.empty() || static_cast<int64_t>(params.size()) >= pieces_.back().end),
           "AdamW: buffers do not match the optimizer's pieces");
  for (const Run& run : runs_) {
    const auto at = static_cast<size_t>(run.begin), n = static_cast<size_t>(run.end - run.begin);
    ops_.adamw(params.subspan(static_cast<size_t>(run.param), n), grads.subspan(at, n), m_->span().subspan(at, n), v_->span().subspan(at, n),
               lr * run.lr_scale, train_.beta1, train_.beta2, train_.eps * run.eps_scale,
               run.decay ? train_.weight_decay : 0.0, step);
  }
}

template double clip_grad_norm<float>(VectorOps<float>&, std::span<float>, double);
template double clip_grad_norm<double>(VectorOps<double>&, std::span<double>, double);
template void clip_to_norm<float>(VectorOps<float>&, std::span<float>, double, double);
template void clip_to_norm<double>(VectorOps<double>&, std::span<double>, double, double);
template class AdamW<float>;
template class AdamW<double>;

}  // namespace kl
