#include "src/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

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

template <class T>
AdamW<T>::AdamW(const ParamTable& table, const TrainConfig& train, int64_t begin, int64_t end, VectorOps<T>& ops)
    : train_(train), begin_(begin), end_(end), ops_(ops), m_(ops.alloc(end - begin)), v_(ops.alloc(end - begin)) {
  // The table's tensors in offset order, clipped to the range; the padding between two tensors
  // (zeros, with zero gradients) goes with the run before it, where AdamW leaves it zero.
  for (const ParamSpec& spec : table.specs()) {
    const int64_t lo = std::max(spec.offset, begin_), hi = std::min(spec.offset + spec.numel(), end_);
    if (lo >= hi) continue;
    const Run run{lo - begin_, hi - begin_, spec.decay, spec.lr_scale, spec.eps_scale};
    if (!runs_.empty() && runs_.back().same_update(run)) {
      runs_.back().end = run.end;
    } else {
      runs_.push_back(run);
    }
  }
}

template <class T>
void AdamW<T>::update(std::span<T> params, std::span<const T> grads, double lr, int64_t step) {
  KL_CHECK(static_cast<int64_t>(params.size()) == end_ - begin_ && grads.size() == params.size(),
           "AdamW: buffers do not match the optimizer's range");
  for (const Run& run : runs_) {
    const auto at = static_cast<size_t>(run.begin), n = static_cast<size_t>(run.end - run.begin);
    ops_.adamw(params.subspan(at, n), grads.subspan(at, n), m_->span().subspan(at, n), v_->span().subspan(at, n),
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
