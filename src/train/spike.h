// Loss and gradient-norm spikes (train.spike_policy): a step whose loss or global gradient norm,
// both finite, lies more than train.spike_sigma standard deviations above the mean of the last
// train.spike_window admitted steps. Like llm.c's outlier detector, the statistics are a plain
// mean and (population) standard deviation over a sliding window, and nothing is judged until the
// window is full. The gradient norm is judged by its logarithm: its fluctuations are
// multiplicative and skewed to the right, and on the default job a plain z-score called a norm of
// twice the window's mean a 6-sigma spike (step 264 of 450), where a spike worth acting on is
// orders of magnitude. Only admitted steps enter the window: a skipped spike does not raise the bar for
// the next one.
//
// Every rank judges the same reduced loss and norm, so every rank reaches the same verdict; the
// trainer still combines the verdicts over the world before acting on one. The window travels in
// the checkpoint (save/restore), so a resumed run judges exactly as an uninterrupted one.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

namespace kl {

struct SpikeVerdict {
  bool spike = false;
  double loss_z = 0, norm_z = 0;  // deviations above the window's mean (0 while it fills)
};

class SpikeDetector {
 public:
  SpikeDetector(double sigma, int window) : sigma_(sigma), window_(window) {}

  // Whether (loss, grad_norm) is a spike against the window; changes nothing.
  SpikeVerdict judge(double loss, double grad_norm) const;  // norm_z is log(grad_norm)'s
  // Adds an admitted step's values to the window (dropping the oldest once it is full).
  void admit(double loss, double grad_norm);

  // The streak that train.max_skips bounds. A spike at `step_number` (1-based) lengthens it and
  // returns its length; an admitted step ends it only past the furthest spike, so the steps a
  // rollback replays before the spike do not end it, and a spike that every batch meets at the same
  // step stops the run instead of looping.
  int note_spike(int64_t step_number);
  void note_admitted(int64_t step_number);

  // The window and the streak as text that restore() reads back bit for bit ("" when empty).
  std::string save() const;
  // Throws UserError (naming `where`) when `text` is not what save() writes. The window is replaced;
  // the streak is the longer of ours and the text's: a new process takes the saved one, a rollback
  // to an older checkpoint keeps the streak that led to it.
  void restore(const std::string& text, const std::string& where);

  bool full() const { return static_cast<int>(losses_.size()) == window_; }

 private:
  double z_score(const std::deque<double>& values, double x) const;

  double sigma_;
  int window_;
  std::deque<double> losses_, norms_;
  int streak_ = 0;              // spikes in a row
  int64_t furthest_spike_ = 0;  // the latest step (1-based) that spiked
};

}  // namespace kl
