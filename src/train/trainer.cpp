#include "src/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "models/gpt.h"
#include "src/data/dataset.h"
#include "src/train/metrics.h"
#include "src/train/optimizer.h"
#include "src/util/error.h"

namespace kl {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Mean loss over eval_batches x global_batch validation windows, the same windows every time.
double validation_loss(GptModel<float>& model, const TokenDataset& val, const Config& c,
                       std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  const int64_t total = int64_t{c.train.eval_batches} * c.train.global_batch;
  double sum = 0.0;
  for (int64_t first = 0; first < total; first += c.train.micro_batch) {
    const int count = static_cast<int>(std::min<int64_t>(c.train.micro_batch, total - first));
    val.eval_batch(first, count, total, inputs.data(), targets.data());
    sum += model.evaluate(inputs.data(), targets.data(), count) * count;
  }
  return sum / static_cast<double>(total);
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out.flush()) throw UserError("cannot write " + path.string());
}

}  // namespace

int set_threads(int requested) {
  const int threads = requested > 0 ? requested : omp_get_num_procs();
  omp_set_num_threads(threads);
  return threads;
}

TrainSummary train(const Config& c, std::ostream& progress) {
  if (c.data.train.empty()) throw UserError("config: data.train is not set (token shard files)");
  if (c.data.val.empty()) throw UserError("config: data.val is not set (token shard files)");
  const int threads = set_threads(c.run.threads);
  const TokenDataset train_data(c.data.train, c.model.vocab, c.model.seq_len);
  const TokenDataset val_data(c.data.val, c.model.vocab, c.model.seq_len);

  std::error_code error;
  std::filesystem::create_directories(c.run.dir, error);
  if (error) throw UserError("run.dir " + c.run.dir + ": " + error.message());
  write_text(std::filesystem::path(c.run.dir) / "config.ini", c.to_ini());
  MetricsWriter metrics((std::filesystem::path(c.run.dir) / "metrics.jsonl").string());

  GptModel<float> model(c.model, c.train.micro_batch, c.parallel.recompute == "block");
  model.init(static_cast<uint64_t>(c.train.seed));
  AdamW<float> optimizer(model.table(), c.train);
  const int64_t parameters = model.table().parameter_count();
  progress << "kilolayer: " << c.model.layers << " layers, d_model " << c.model.d_model << ", "
           << parameters << " parameters, " << threads << " thread(s), recompute "
           << c.parallel.recompute << "\n";

  const int T = c.model.seq_len;
  std::vector<int32_t> inputs(static_cast<size_t>(c.train.micro_batch) * T);
  std::vector<int32_t> targets(inputs.size());
  const int micro_steps = c.train.global_batch / c.train.micro_batch;
  const double tokens_per_step = double(c.train.global_batch) * T;
  const auto seed = static_cast<uint64_t>(c.train.seed);

  TrainSummary summary;
  summary.unigram_entropy = val_data.unigram_entropy();
  std::vector<double> step_times;
  const auto run_start = Clock::now();
  for (int64_t step = 0; step < c.train.steps; ++step) {
    const auto step_start = Clock::now();
    model.zero_grads();
    double loss = 0.0;
    for (int micro = 0; micro < micro_steps; ++micro) {
      const int64_t first = int64_t{micro} * c.train.micro_batch;
      train_data.training_batch(seed, step, first, c.train.micro_batch, inputs.data(), targets.data());
      const BatchPosition position{seed, step, first};
      loss += model.forward_backward(inputs.data(), targets.data(), c.train.micro_batch, position,
                                     1.0 / tokens_per_step) /
              micro_steps;
    }
    const double grad_norm = clip_grad_norm(model.grads(), c.train.clip);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      throw UserError("training diverged at step " + std::to_string(step + 1) + ": loss " +
                      std::to_string(loss) + ", gradient norm " + std::to_string(grad_norm) +
                      " (lower train.lr or raise train.warmup)");
    }
    const double lr = learning_rate(c.train, step);
    optimizer.update(model.params(), model.grads(), lr, step + 1);
    const double step_time = seconds_since(step_start);
    step_times.push_back(step_time);
    summary.losses.push_back(loss);

    const int64_t done = step + 1;
    const bool last = done == c.train.steps;
    const bool evaluate = last || (c.train.eval_every > 0 && done % c.train.eval_every == 0);
    StepMetrics m{done, loss, lr, grad_norm, tokens_per_step / step_time, step_time, std::nullopt};
    if (evaluate) {
      m.val_loss = validation_loss(model, val_data, c, inputs, targets);
      summary.final_val_loss = *m.val_loss;
    }
    if (evaluate || last || done % c.run.log_every == 0) {
      metrics.write(m);
      const double eta = seconds_since(run_start) / done * (c.train.steps - done);
      progress << progress_line(m, c.train.steps, eta) << "\n" << std::flush;
    }
  }
  // Median step time, leaving out the first (warm-up: page faults, thread start) when there are more.
  std::vector<double> steady(step_times.begin() + (step_times.size() > 1 ? 1 : 0), step_times.end());
  std::sort(steady.begin(), steady.end());
  summary.tokens_per_s = tokens_per_step / steady[steady.size() / 2];
  return summary;
}

}  // namespace kl
