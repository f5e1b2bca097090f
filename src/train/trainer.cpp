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

// Mean loss over eval_batches x global_batch validation windows (the same windows every time),
// each rank evaluating its contiguous share.
double validation_loss(GptModel<float>& model, const TokenDataset& val, const Config& c, Comm& dp,
                       std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  const int64_t total = int64_t{c.train.eval_batches} * c.train.global_batch;
  const int64_t share = total / dp.size();
  const int64_t begin = share * dp.rank();
  double sum = 0.0;
  for (int64_t first = begin; first < begin + share; first += c.train.micro_batch) {
    const int count = static_cast<int>(std::min<int64_t>(c.train.micro_batch, begin + share - first));
    val.eval_batch(first, count, total, inputs.data(), targets.data());
    sum += model.evaluate(inputs.data(), targets.data(), count) * count;
  }
  return dp.all_reduce_sum(sum) / static_cast<double>(total);
}

void write_file(const std::filesystem::path& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out.flush()) throw UserError("cannot write " + path.string());
}

// Every rank of the group must hold the same parameters; a hash of their bits, compared across the
// group, catches any drift (a reduction that differs between ranks, a missed update).
void check_replicas_agree(std::span<const float> params, Comm& dp, int64_t step) {
  if (dp.size() == 1) return;
  uint64_t hash = 0xCBF29CE484222325ull;
  for (float x : params) hash = (hash ^ std::bit_cast<uint32_t>(x)) * 0x100000001B3ull;
  const auto mine = static_cast<double>(hash >> 12);  // 52 bits: exact in a double
  const double sum = dp.all_reduce_sum(mine);
  const double sum_sq = dp.all_reduce_sum(mine * mine / 1e30);
  // All equal exactly when sum = n x mine and the squares agree too, on every rank.
  const bool agree = sum == mine * dp.size() && sum_sq == (mine * mine / 1e30) * dp.size();
  KL_CHECK(agree, "data-parallel replicas hold different parameters after step " + std::to_string(step));
}

// Where this rank's optimizer works: everything, or its 1/dp shard of the padded buffer (ZeRO-1).
struct Shard {
  int64_t begin, end;
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

  const bool zero = c.parallel.zero == 1 && dp.size() > 1;
  GptModel<float> model(c.model, c.train.micro_batch, c.parallel.recompute == "block", dp.size());
  model.init(static_cast<uint64_t>(c.train.seed));
  const auto padded = static_cast<int64_t>(model.params().size());
  const Shard shard = zero ? Shard{padded / dp.size() * dp.rank(), padded / dp.size() * (dp.rank() + 1)}
                           : Shard{0, padded};
  AdamW<float> optimizer(model.table(), c.train, shard.begin, shard.end);
  std::vector<float> grad_shard(zero ? static_cast<size_t>(shard.end - shard.begin) : 0);
  const auto bucket_elements = static_cast<int64_t>(c.parallel.bucket_mb * (1 << 20) / sizeof(float));
  std::unique_ptr<GradReducer> reducer;
  if (dp.size() > 1 && !zero) reducer = std::make_unique<GradReducer>(dp, model.grads(), std::max<int64_t>(bucket_elements, 1));
  const GradientsReady on_ready = [&reducer](int64_t offset) { reducer->ready_from(offset); };

  progress << "kilolayer: " << c.model.layers << " layers, d_model " << c.model.d_model << ", "
           << model.table().parameter_count() << " parameters, dp " << dp.size() << " x "
           << threads << " thread(s), recompute " << c.parallel.recompute
           << (zero ? ", ZeRO-1" : "")
           << (reducer ? ", " + std::to_string(reducer->buckets()) + " gradient buckets" : "") << "\n";

  const int T = c.model.seq_len;
  const int per_rank = c.train.global_batch / dp.size();
  const int micro_steps = per_rank / c.train.micro_batch;
  std::vector<int32_t> inputs(static_cast<size_t>(c.train.micro_batch) * T);
  std::vector<int32_t> targets(inputs.size());
  const double tokens_per_step = double(c.train.global_batch) * T;
  const auto seed = static_cast<uint64_t>(c.train.seed);
  // Bytes each rank sends and receives per step in its gradient traffic (as the algorithms' input).
  const int64_t bytes_reduced = dp.size() == 1 ? 0 : padded * int64_t{sizeof(float)} * (zero ? 2 : 1);

  TrainSummary summary;
  summary.unigram_entropy = val_data.unigram_entropy();
  std::vector<double> step_times;
  const auto run_start = Clock::now();
  for (int64_t step = 0; step < c.train.steps; ++step) {
    const auto step_start = Clock::now();
    model.zero_grads();
    double local_loss = 0.0;
    for (int micro = 0; micro < micro_steps; ++micro) {
      const int64_t first = int64_t{dp.rank()} * per_rank + int64_t{micro} * c.train.micro_batch;
      train_data.training_batch(seed, step, first, c.train.micro_batch, inputs.data(), targets.data());
      const bool last = micro == micro_steps - 1;
      if (last && reducer) reducer->begin();
      const bool overlap = last && reducer && c.parallel.overlap;
      local_loss += model.forward_backward(inputs.data(), targets.data(), c.train.micro_batch,
                                           {seed, step, first}, 1.0 / tokens_per_step,
                                           overlap ? on_ready : GradientsReady{}) *
                    c.train.micro_batch / c.train.global_batch;
    }
    // Sum the gradients over the group. Each rank's loss scale is 1 / (global tokens), so the sum is
    // the gradient of the global batch's mean loss.
    double comm_wait = 0.0;
    std::span<float> owned = model.grads();  // the gradients this rank's optimizer uses
    if (reducer) {
      // Without overlap (a baseline for bench/dp_scaling.sh), line the ranks up first so that the
      // wait measures the reductions alone, not one rank waiting for the other's backward pass.
      if (!c.parallel.overlap) dp.barrier();
      comm_wait = reducer->finish();
    } else if (zero) {
      const auto start = Clock::now();
      dp.reduce_scatter_sum(model.grads(), grad_shard)->wait();
      comm_wait = seconds_since(start);
      owned = grad_shard;
    }
    const double loss = dp.all_reduce_sum(local_loss);
    // Global-norm clipping: the norm over every gradient element once. Without ZeRO every rank holds
    // all of them; with it, each holds a shard, and one scalar reduction adds them up.
    double norm_sq = cpu::sum_squares(owned.data(), static_cast<int64_t>(owned.size()));
    if (zero) norm_sq = dp.all_reduce_sum(norm_sq);
    const double grad_norm = std::sqrt(norm_sq);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      throw UserError("training diverged at step " + std::to_string(step + 1) + ": loss " +
                      std::to_string(loss) + ", gradient norm " + std::to_string(grad_norm) +
                      " (lower train.lr or raise train.warmup)");
    }
    clip_to_norm(owned, grad_norm, c.train.clip);
    const double lr = learning_rate(c.train, step);
    const auto params = model.params().subspan(static_cast<size_t>(shard.begin),
                                               static_cast<size_t>(shard.end - shard.begin));
    optimizer.update(params, owned, lr, step + 1);
    if (zero) {
      const auto start = Clock::now();
      dp.all_gather(params, model.params())->wait();
      comm_wait += seconds_since(start);
    }
    const double step_time = seconds_since(step_start);
    step_times.push_back(step_time);
    summary.losses.push_back(loss);

    const int64_t done = step + 1;
    const bool last = done == c.train.steps;
    const bool evaluate = last || (c.train.eval_every > 0 && done % c.train.eval_every == 0);
    StepMetrics m{done, loss, lr, grad_norm, tokens_per_step / step_time, step_time,
                  step_time - comm_wait, comm_wait, bytes_reduced, std::nullopt};
    if (evaluate) {
      check_replicas_agree(model.params(), dp, done);
      m.val_loss = validation_loss(model, val_data, c, dp, inputs, targets);
      summary.final_val_loss = *m.val_loss;
    }
    if (leader && (evaluate || done % c.run.log_every == 0)) {
      metrics->write(m);
      const double eta = seconds_since(run_start) / done * (c.train.steps - done);
      progress << progress_line(m, c.train.steps, eta) << "\n" << std::flush;
    }
  }
  if (leader && c.run.save_final_params) {
    write_file(run_dir / "final_params.f32", model.params().data(), model.params().size_bytes());
  }
  // Median step time, leaving out the first (warm-up: page faults, thread start) when there are more.
  std::vector<double> steady(step_times.begin() + (step_times.size() > 1 ? 1 : 0), step_times.end());
  std::sort(steady.begin(), steady.end());
  summary.tokens_per_s = tokens_per_step / steady[steady.size() / 2];
  return summary;
}

}  // namespace kl
