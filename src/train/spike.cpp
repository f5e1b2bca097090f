#include "src/train/spike.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "src/util/error.h"

namespace kl {

double SpikeDetector::z_score(const std::deque<double>& values, double x) const {
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double variance = 0;
  for (double v : values) variance += (v - mean) * (v - mean);
  // A window of equal values has no spread: a relative floor keeps rounding-level noise from
  // counting as a spike, while a clearly larger value still does.
  const double deviation = std::max(std::sqrt(variance / static_cast<double>(values.size())), 1e-6 * std::fabs(mean));
  if (deviation == 0) return x > mean ? std::numeric_limits<double>::infinity() : 0.0;
  return (x - mean) / deviation;
}

namespace {
// A zero norm (nothing to learn from this batch) stays finite in log space.
double log_norm(double grad_norm) { return std::log(std::max(grad_norm, 1e-30)); }
}  // namespace

SpikeVerdict SpikeDetector::judge(double loss, double grad_norm) const {
  SpikeVerdict verdict;
  if (!full()) return verdict;
  verdict.loss_z = z_score(losses_, loss);
  verdict.norm_z = z_score(norms_, log_norm(grad_norm));
  verdict.spike = verdict.loss_z > sigma_ || verdict.norm_z > sigma_;
  return verdict;
}

void SpikeDetector::admit(double loss, double grad_norm) {
  losses_.push_back(loss);
  norms_.push_back(log_norm(grad_norm));
  while (static_cast<int>(losses_.size()) > window_) {
    losses_.pop_front();
    norms_.pop_front();
  }
}

int SpikeDetector::note_spike(int64_t step_number) {
  furthest_spike_ = std::max(furthest_spike_, step_number);
  return ++streak_;
}

void SpikeDetector::note_admitted(int64_t step_number) {
  if (step_number > furthest_spike_) streak_ = 0;
}

std::string SpikeDetector::save() const {
  if (losses_.empty() && streak_ == 0) return "";
  // Hexadecimal floating point: exact, so that a resumed run's statistics are bit for bit the same.
  std::string text;
  char number[40];
  for (const auto* values : {&losses_, &norms_}) {
    text += values == &losses_ ? "loss" : "norm";
    for (double v : *values) {
      std::snprintf(number, sizeof number, " %a", v);
      text += number;
    }
    text += '\n';
  }
  // Checkpoints of format 3 before this line existed have none: a streak of 0.
  if (streak_ > 0) text += "streak " + std::to_string(streak_) + " " + std::to_string(furthest_spike_) + "\n";
  return text;
}

void SpikeDetector::restore(const std::string& text, const std::string& where) {
  losses_.clear();
  norms_.clear();
  if (text.empty()) return;
  auto fail = [&] { throw UserError(where + ": the spike detector's window is malformed"); };
  std::istringstream lines(text);
  std::string line;
  for (auto* values : {&losses_, &norms_}) {
    if (!std::getline(lines, line)) fail();
    std::istringstream words(line);
    std::string word;
    words >> word;
    if (word != (values == &losses_ ? "loss" : "norm")) fail();
    while (words >> word) {
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(word.c_str(), &end);
      if (errno != 0 || end != word.c_str() + word.size() || !std::isfinite(v)) fail();
      values->push_back(v);
    }
  }
  if (losses_.size() != norms_.size()) fail();
  if (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string word, rest;
    int streak = 0;
    int64_t furthest = 0;
    if (!(words >> word >> streak >> furthest) || word != "streak" || streak < 1 || furthest < 1 || (words >> rest)) {
      fail();
    }
    streak_ = std::max(streak_, streak);
    furthest_spike_ = std::max(furthest_spike_, furthest);
  }
  if (std::getline(lines, line)) fail();
  // A smaller train.spike_window than at the save keeps the newest steps.
  while (static_cast<int>(losses_.size()) > window_) {
    losses_.pop_front();
    norms_.pop_front();
  }
}

}  // namespace kl
