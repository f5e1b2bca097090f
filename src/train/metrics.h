// The run directory's metrics file (one JSON object per logged step) and the progress line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace kl {

// Pipeline parallelism's part of a step, gathered from every stage.
struct PipelineMetrics {
  double bubble = 0;         // mean over stages of (time blocked on point-to-point) / step time
  double bubble_theory = 0;  // the schedule's formula (src/pipeline/schedule.h)
  std::vector<double> stage_wait_s;         // per stage: blocked on point-to-point
  std::vector<double> stage_activation_mb;  // per stage: activation buffers held at the peak
  std::vector<double> stage_peak_rss_mb;    // per stage: the process's peak resident memory so far
};

// A loss or gradient-norm spike (train.spike_policy, src/train/spike.h), on the row of the step it
// was found at (skip) or on the first row after the rollback (rollback).
struct SpikeEvent {
  std::string action;     // "skip" or "rollback"
  int64_t at_step = 0;    // the step whose loss or norm spiked (1-based)
  double loss = 0, grad_norm = 0, loss_z = 0, norm_z = 0;
  int64_t to_step = 0;        // rollback: the checkpoint's step the run went back to
  int64_t skipped_batch = 0;  // rollback: the batch number never used again
};

struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, step_time_s = 0;
  double compute_s = 0;      // step time not spent waiting on gradient communication
  double comm_wait_s = 0;    // time blocked on gradient reductions (what overlap did not hide)
  int64_t bytes_reduced = 0;  // gradient bytes this rank reduced (reduce-scattered + gathered)
  int64_t skipped_steps = 0;  // steps skipped so far for a non-finite loss or gradient norm
  std::optional<double> val_loss;
  std::optional<PipelineMetrics> pipeline;
  std::optional<SpikeEvent> spike;
};

class MetricsWriter {
 public:
  // Creates `path`, keeping the rows of an earlier run up to step `keep_through` (a resumed run
  // continues the file; rows past its checkpoint are dropped). Throws UserError when it cannot.
  explicit MetricsWriter(const std::string& path, int64_t keep_through = 0);
  // The same on the open file: rows past `keep_through` are dropped (a rollback).
  void rewind(int64_t keep_through);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(const StepMetrics& m);  // one line, flushed

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "step 12/300 | loss 2.3456 | val 2.4012 | lr 1.00e-03 | norm 0.812 | 3512 tok/s | ETA 4m10s"
std::string progress_line(const StepMetrics& m, int64_t total_steps, double eta_s);

}  // namespace kl
