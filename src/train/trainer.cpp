#include "src/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>

#include "comm/grad_reducer.h"
#include "models/gpt.h"
#include "src/data/dataset.h"
#include "src/kernels/cpu/ops.h"
#include "src/train/metrics.h"
#include "src/train/optimizer.h"
#include "src/util/error.h"

namespace kl {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void write_file(const std::filesystem::path& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out.flush()) throw UserError("cannot write " + path.string());
}

// One rank's share of training: the model, its optimizer (over all parameters, or over this rank's
// 1/dp shard under ZeRO-1) and the gradient reduction over the data-parallel group.
class RankTrainer {
 public:
  RankTrainer(const Config& c, Comm& dp)
      : c_(c),
        dp_(dp),
        zero_(c.parallel.zero == 1 && dp.size() > 1),
        model_(c.model, c.train.micro_batch, c.parallel.recompute == "block", dp.size()),
        shard_(shard_of(static_cast<int64_t>(model_.params().size()))),
        optimizer_(model_.table(), c.train, shard_.begin, shard_.end),
        grad_shard_(zero_ ? static_cast<size_t>(shard_.end - shard_.begin) : 0),
        inputs_(static_cast<size_t>(c.train.micro_batch) * c.model.seq_len),
        targets_(inputs_.size()) {
    model_.init(static_cast<uint64_t>(c.train.seed));
    if (dp.size() > 1 && !zero_) {
      const auto bucket = static_cast<int64_t>(c.parallel.bucket_mb * (1 << 20) / sizeof(float));
      reducer_ = std::make_unique<GradReducer>(dp, model_.grads(), std::max<int64_t>(bucket, 1));
    }
  }

  std::string describe(int threads) const {
    return "kilolayer: " + std::to_string(c_.model.layers) + " layers, d_model " +
           std::to_string(c_.model.d_model) + ", " + std::to_string(model_.table().parameter_count()) +
           " parameters, dp " + std::to_string(dp_.size()) + " x " + std::to_string(threads) +
           " thread(s), recompute " + c_.parallel.recompute + (zero_ ? ", ZeRO-1" : "") +
           (reducer_ ? ", " + std::to_string(reducer_->buckets()) + " gradient buckets" : "");
  }

  // One optimizer step (0-based `step`); the metrics lack val_loss.
  StepMetrics step(const TokenDataset& data, int64_t step) {
    const auto start = Clock::now();
    const double local_loss = accumulate_gradients(data, step);
    double comm_wait = reduce_gradients();
    const double loss = dp_.all_reduce_sum(local_loss);
    const double grad_norm = global_grad_norm();
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      throw UserError("training diverged at step " + std::to_string(step + 1) + ": loss " +
                      std::to_string(loss) + ", gradient norm " + std::to_string(grad_norm) +
                      " (lower train.lr or raise train.warmup)");
    }
    clip_to_norm(owned_grads(), grad_norm, c_.train.clip);
    const double lr = learning_rate(c_.train, step);
    comm_wait += update(lr, step + 1);
    const double step_time = seconds_since(start);
    const double tokens = double(c_.train.global_batch) * c_.model.seq_len;
    // Bytes each rank puts through its gradient collectives per step.
    const int64_t bytes = dp_.size() == 1 ? 0 : model_.grads().size_bytes() * (zero_ ? 2 : 1);
    return {step + 1, loss, lr, grad_norm, tokens / step_time, step_time, step_time - comm_wait,
            comm_wait, bytes, std::nullopt};
  }

  // Mean loss over eval_batches x global_batch validation windows (the same windows every time),
  // each rank evaluating its contiguous share.
  double validation_loss(const TokenDataset& val) {
    const int64_t total = int64_t{c_.train.eval_batches} * c_.train.global_batch;
    const int64_t share = total / dp_.size();
    const int64_t begin = share * dp_.rank();
    double sum = 0.0;
    for (int64_t first = begin; first < begin + share; first += c_.train.micro_batch) {
      const int count = static_cast<int>(std::min<int64_t>(c_.train.micro_batch, begin + share - first));
      val.eval_batch(first, count, total, inputs_.data(), targets_.data());
      sum += model_.evaluate(inputs_.data(), targets_.data(), count) * count;
    }
    return dp_.all_reduce_sum(sum) / static_cast<double>(total);
  }

  // Every rank of the group must hold the same parameters; a hash of their bits, compared across
  // the group, catches any drift (a reduction that differs between ranks, a missed update).
  void check_replicas_agree(int64_t step) {
    if (dp_.size() == 1) return;
    uint64_t hash = 0xCBF29CE484222325ull;
    for (float x : model_.params()) hash = (hash ^ std::bit_cast<uint32_t>(x)) * 0x100000001B3ull;
    const auto mine = static_cast<double>(hash >> 12);  // 52 bits: exact in a double
    double sums[2] = {mine, mine * mine / 1e30};
    dp_.all_reduce_sum(sums);
    // All equal exactly when the sum and the sum of squares are n times this rank's.
    const bool agree = sums[0] == mine * dp_.size() && sums[1] == (mine * mine / 1e30) * dp_.size();
    KL_CHECK(agree, "data-parallel replicas hold different parameters after step " + std::to_string(step));
  }

  std::span<const float> params() const { return model_.params(); }

 private:
  struct Shard {
    int64_t begin, end;
  };
  Shard shard_of(int64_t padded) const {
    if (!zero_) return {0, padded};
    const int64_t size = padded / dp_.size();
    return {size * dp_.rank(), size * (dp_.rank() + 1)};
  }

  // The gradients this rank's optimizer uses: all of them, or its reduce-scattered shard.
  std::span<float> owned_grads() { return zero_ ? std::span<float>(grad_shard_) : model_.grads(); }

  // Forward and backward over this rank's share of the step's global batch: rank r takes samples
  // [r G/dp, (r+1) G/dp), in micro-batches. Returns the rank's share of the global mean loss.
  double accumulate_gradients(const TokenDataset& data, int64_t step) {
    const int per_rank = c_.train.global_batch / dp_.size();
    const int micro_steps = per_rank / c_.train.micro_batch;
    const auto seed = static_cast<uint64_t>(c_.train.seed);
    const double loss_scale = 1.0 / (double(c_.train.global_batch) * c_.model.seq_len);
    const GradientsReady start_buckets = [this](int64_t offset) { reducer_->ready_from(offset); };
    model_.zero_grads();
    double loss = 0.0;
    for (int micro = 0; micro < micro_steps; ++micro) {
      const int64_t first = int64_t{dp_.rank()} * per_rank + int64_t{micro} * c_.train.micro_batch;
      data.training_batch(seed, step, first, c_.train.micro_batch, inputs_.data(), targets_.data());
      const bool last = micro == micro_steps - 1;
      if (last && reducer_) reducer_->begin();
      const bool overlap = last && reducer_ && c_.parallel.overlap;
      loss += model_.forward_backward(inputs_.data(), targets_.data(), c_.train.micro_batch,
                                      {seed, step, first}, loss_scale,
                                      overlap ? start_buckets : GradientsReady{}) *
              c_.train.micro_batch / c_.train.global_batch;
    }
    return loss;
  }

  // Sums the gradients over the group (each rank's loss scale is 1 / global tokens, so the sum is
  // the global batch's gradient). Returns the seconds spent blocked on it.
  double reduce_gradients() {
    if (reducer_) {
      // Without overlap (a baseline for bench/dp_scaling.sh), line the ranks up first so that the
      // wait measures the reductions alone, not one rank waiting for the other's backward pass.
      if (!c_.parallel.overlap) dp_.barrier();
      return reducer_->finish();
    }
    if (!zero_) return 0.0;
    const auto start = Clock::now();
    dp_.reduce_scatter_sum(model_.grads(), grad_shard_)->wait();
    return seconds_since(start);
  }

  // The norm over every gradient element once: each rank holds all of them, or (ZeRO-1) a shard,
  // and one scalar reduction adds the shards up.
  double global_grad_norm() {
    const auto grads = owned_grads();
    double norm_sq = cpu::sum_squares(grads.data(), static_cast<int64_t>(grads.size()));
    if (zero_) norm_sq = dp_.all_reduce_sum(norm_sq);
    return std::sqrt(norm_sq);
  }

  // AdamW on this rank's range; under ZeRO-1 the updated shards are then gathered. Returns the
  // seconds spent gathering.
  double update(double lr, int64_t step_number) {
    const auto params = model_.params().subspan(static_cast<size_t>(shard_.begin),
                                                static_cast<size_t>(shard_.end - shard_.begin));
    optimizer_.update(params, owned_grads(), lr, step_number);
    if (!zero_) return 0.0;
    const auto start = Clock::now();
    dp_.all_gather(params, model_.params())->wait();
    return seconds_since(start);
  }

  const Config& c_;
  Comm& dp_;
  bool zero_;
  GptModel<float> model_;
  Shard shard_;
  AdamW<float> optimizer_;
  std::vector<float> grad_shard_;
  std::unique_ptr<GradReducer> reducer_;
  std::vector<int32_t> inputs_, targets_;
};

}  // namespace

int set_threads(int requested) {
  const int threads = requested > 0 ? requested : omp_get_num_procs();
  omp_set_num_threads(threads);
  return threads;
}

TrainSummary train(const Config& c, Comm& dp, std::ostream& progress) {
  if (c.data.train.empty()) throw UserError("config: data.train is not set (token shard files)");
  if (c.data.val.empty()) throw UserError("config: data.val is not set (token shard files)");
  const bool leader = dp.rank() == 0;
  const int threads = set_threads(c.run.threads);
  const TokenDataset train_data(c.data.train, c.model.vocab, c.model.seq_len);
  const TokenDataset val_data(c.data.val, c.model.vocab, c.model.seq_len);

  const std::filesystem::path run_dir(c.run.dir);
  std::optional<MetricsWriter> metrics;
  if (leader) {
    std::error_code error;
    std::filesystem::create_directories(run_dir, error);
    if (error) throw UserError("run.dir " + c.run.dir + ": " + error.message());
    const std::string ini = c.to_ini();
    write_file(run_dir / "config.ini", ini.data(), ini.size());
    metrics.emplace((run_dir / "metrics.jsonl").string());
  }

  RankTrainer trainer(c, dp);
  progress << trainer.describe(threads) << "\n";
  TrainSummary summary;
  summary.unigram_entropy = val_data.unigram_entropy();
  std::vector<double> step_times;
  const auto run_start = Clock::now();
  for (int64_t step = 0; step < c.train.steps; ++step) {
    StepMetrics m = trainer.step(train_data, step);
    step_times.push_back(m.step_time_s);
    summary.losses.push_back(m.loss);
    const bool last = m.step == c.train.steps;
    const bool evaluate = last || (c.train.eval_every > 0 && m.step % c.train.eval_every == 0);
    if (evaluate) {
      trainer.check_replicas_agree(m.step);
      m.val_loss = trainer.validation_loss(val_data);
      summary.final_val_loss = *m.val_loss;
    }
    if (leader && (evaluate || m.step % c.run.log_every == 0)) {
      metrics->write(m);
      const double eta = seconds_since(run_start) / m.step * (c.train.steps - m.step);
      progress << progress_line(m, c.train.steps, eta) << "\n" << std::flush;
    }
  }
  if (leader && c.run.save_final_params) {
    write_file(run_dir / "final_params.f32", trainer.params().data(), trainer.params().size_bytes());
  }
  // Median step time, leaving out the first (warm-up: page faults, thread start) when there are more.
  std::vector<double> steady(step_times.begin() + (step_times.size() > 1 ? 1 : 0), step_times.end());
  std::sort(steady.begin(), steady.end());
  summary.tokens_per_s = double(c.train.global_batch) * c.model.seq_len / steady[steady.size() / 2];
  return summary;
}

}  // namespace kl
