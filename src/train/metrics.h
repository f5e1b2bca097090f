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

struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, step_time_s = 0;
  double compute_s = 0;      // step time not spent waiting on gradient communication
  double comm_wait_s = 0;    // time blocked on gradient reductions (what overlap did not hide)
  int64_t bytes_reduced = 0;  // gradient bytes this rank reduced (reduce-scattered + gathered)
  int64_t skipped_steps = 0;  // steps skipped so far for a non-finite loss or gradient norm
  std::optional<double> val_loss;
  std::optional<PipelineMetrics> pipeline;
};

class MetricsWriter {
 public:
  // Creates `path`, keeping the rows of an earlier run up to step `keep_through` (a resumed run
  // continues the file; rows past its checkpoint are dropped). Throws UserError when it cannot.
  explicit MetricsWriter(const std::string& path, int64_t keep_through = 0);
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
