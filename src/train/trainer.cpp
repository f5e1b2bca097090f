#include "src/train/trainer.h"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <utility>

#include "comm/solo_comm.h"
#include "src/checkpoint/checkpoint.h"
#include "src/checkpoint/store.h"
#include "src/data/data_info.h"
#include "src/data/dataset.h"
#include "src/data/fingerprint.h"
#include "src/data/tokenizer.h"
#include "src/pipeline/schedule.h"
#include "src/pipeline/worker.h"
#include "src/train/checkpoint_saver.h"
#include "src/train/checkpoint_state.h"
#include "src/train/diagnostics.h"
#include "src/train/grad_sync.h"
#include "src/train/layer_probe.h"
#include "src/train/metrics.h"
#include "src/train/nonfinite.h"
#include "src/train/optimizer.h"
#include "src/train/preemption.h"
#include "src/train/spike.h"
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

// One rank's share of training: its worker (its pipeline stage, the whole model when pp = 1), the
// gradient sync, and the update the schedule's OptimizerStep runs: the loss and the preemption flag
// reduced over every rank, the global gradient norm, clipping, the non-finite policy and AdamW
// (over all of the worker's parameters, or its 1/dp shard under ZeRO-1).
class RankTrainer {
 public:
  RankTrainer(const Config& c, const TrainComms& comms, const FaultInjection& faults = {})
      : c_(c),
        comms_(comms),
        worker_(make_worker(c, comms)),
        sync_(c, worker_->comms().dp, *worker_),
        optimizer_(worker_->table(), c.train, sync_.shard(), worker_->ops()),
        nonfinite_(c.train),
        spikes_(c.train.spike_sigma, c.train.spike_window),
        skipped_batches_(skip_batch_list(c)),
        probe_(c, comms, *worker_),
        checkpoint_state_(c, comms, *worker_, optimizer_, sync_) {
    const int world_rank = comms.world.rank();
    if (faults.nan_rank == world_rank) nan_step_ = faults.nan_step;
    if (faults.spike_rank == world_rank) {
      spike_step_ = faults.spike_step;
      spike_value_ = faults.spike_value;
      spike_repeat_ = faults.spike_repeat;
    }
  }

  std::string describe(int threads) const {
    return "kilolayer: " + std::to_string(c_.model.layers) + " layers, d_model " +
           std::to_string(c_.model.d_model) + ", " + std::to_string(ParamTable(c_.model).parameter_count()) +
           " parameters, dp " + std::to_string(comms_.dp.size()) + " x pp " + std::to_string(c_.parallel.pp) + " x " +
           std::to_string(threads) + " thread(s), recompute " + name_of(c_.parallel.recompute) +
           (sync_.zero() ? ", ZeRO-1" : "") +
           (sync_.buckets() > 0 ? ", " + std::to_string(sync_.buckets()) + " gradient buckets" : "") + "; " +
           worker_->describe();
  }

  // One optimizer step (0-based `step`): the schedule runs it whole, ReduceGrads and OptimizerStep
  // included; the metrics lack val_loss. With `diagnostics`, the step is also measured layer by
  // layer into it (collective: every rank passes one or none).
  StepMetrics step(const TokenDataset& data, int64_t step, DiagnosticsRow* diagnostics = nullptr) {
    const auto start = Clock::now();
    sync_.begin();
    if (diagnostics) probe_.begin();
    double comm_wait = 0.0, loss = 0.0, grad_norm = 0.0;
    pipeline::StepHooks hooks;
    hooks.ready = sync_.ready();
    hooks.needed = sync_.needed();
    if (nan_step_ == step + 1) hooks.grads_zeroed = [this] { inject(std::numeric_limits<float>::quiet_NaN()); };
    if (spike_step_ == step + 1) {
      if (!spike_repeat_) spike_step_ = 0;  // once: a rollback's replay of this step sees clean gradients
      hooks.grads_zeroed = [this] { inject(spike_value_); };
    }
    std::optional<SpikeEvent> spike;
    hooks.reduce_grads = [&] {
      worker_->sum_tied_copies();
      comm_wait += sync_.finish();
    };
    hooks.optimizer_step = [&](double local_loss) {
      if (diagnostics) probe_.end_passes();
      // The loss and the preemption flag travel together: summed over the pipeline, then over the
      // replicas, every rank learns both from the whole world, with no collective of their own.
      double reduced[2] = {local_loss, preemption_requested() ? 1.0 : 0.0};
      comms_.pp.all_reduce_sum(reduced);
      comms_.dp.all_reduce_sum(reduced);
      loss = reduced[0];
      preempted_ = reduced[1] > 0.0;
      grad_norm = global_grad_norm();
      if (diagnostics) probe_.before_update();
      if (nonfinite_.admit(loss, grad_norm, step + 1) && !(spike = judge_spike(loss, grad_norm, step + 1))) {
        clip_to_norm(worker_->ops(), sync_.owned_grads(), grad_norm, c_.train.clip);
        comm_wait += update(learning_rate(c_.train, step), step + 1);
      }
      if (diagnostics) {
        comm_wait += sync_.wait_params();  // the update ratios read every parameter
        *diagnostics = probe_.row(step + 1);  // a skipped step: ratios 0
      }
    };
    const StepWork work = worker_->step(data, batch_of(step), hooks);
    comm_wait += sync_.take_forward_wait();  // ZeRO-1: the forward passes waiting on the last gathers
    const double step_time = seconds_since(start);
    const double tokens = double(c_.train.global_batch) * c_.model.seq_len;
    StepMetrics m{step + 1, loss, learning_rate(c_.train, step), grad_norm, tokens / step_time, step_time,
                  step_time - comm_wait, comm_wait, sync_.bytes_per_step(), nonfinite_.skipped(), std::nullopt,
                  std::nullopt, std::nullopt};
    if (c_.parallel.pp > 1) m.pipeline = pipeline_metrics(work, step_time);
    m.spike = spike;
    return m;
  }

  // The batch (0-based) that step `step` (0-based) trains on: batch k feeds step k until a batch
  // before it is skipped (data.skip_batches, rollbacks); the data samples and dropout masks are
  // keyed by it, the learning rate by the step.
  int64_t batch_of(int64_t step) const {
    int64_t batch = step;
    for (int64_t skipped : skipped_batches_) {  // sorted, 1-based
      if (skipped - 1 <= batch) ++batch;
    }
    return batch;
  }

  // Never trains on batch number `batch` (1-based) again.
  void skip_batch(int64_t batch) {
    skipped_batches_.insert(std::upper_bound(skipped_batches_.begin(), skipped_batches_.end(), batch), batch);
  }

  // What a checkpoint records besides tensors: its step and the run state that makes a resumed run
  // continue bit for bit (the spike window, the skipped batches) or notice other data.
  checkpoint::Header run_state(int64_t step, const std::string& data) const {
    checkpoint::Header header;
    header.step = step;
    header.data = data;
    header.spike_window = spikes_.save();
    for (int64_t b : skipped_batches_) {
      if (!header.skipped_batches.empty()) header.skipped_batches += ',';
      header.skipped_batches += std::to_string(b);
    }
    return header;
  }

  // The run state of a checkpoint's header: its spike window, and its skipped batches added to ours.
  void restore_run_state(const checkpoint::Header& header, const std::string& where) {
    spikes_.restore(header.spike_window, where);
    Config saved;
    saved.data.skip_batches = header.skipped_batches;
    for (int64_t b : skip_batch_list(saved)) {
      if (!std::binary_search(skipped_batches_.begin(), skipped_batches_.end(), b)) skip_batch(b);
    }
  }

  // Whether the last step found a spike that train.spike_policy = rollback must roll back; cleared
  // by reading.
  bool take_rollback() { return std::exchange(rollback_, false); }

  // Mean loss over eval_batches x global_batch validation windows (the same windows every time),
  // each data-parallel rank evaluating its contiguous share.
  double validation_loss(const TokenDataset& val) {
    sync_.wait_params();
    const int64_t total = int64_t{c_.train.eval_batches} * c_.train.global_batch;
    const int64_t share = total / comms_.dp.size();
    const double sum = worker_->evaluate_sum(val, share * comms_.dp.rank(), share, total);
    return comms_.dp.all_reduce_sum(comms_.pp.all_reduce_sum(sum)) / static_cast<double>(total);
  }

  // Every rank of the group must hold the same parameters (and a pipeline's two copies of a tied
  // embedding the same values): a hash of their bits, compared across the group, catches any drift
  // (a reduction that differs between ranks, a missed update).
  void check_replicas_agree(int64_t step) {
    sync_.wait_params();
    KL_CHECK(same_on_all_ranks(comms_.dp, worker_->ops().to_host(worker_->params())),
             "data-parallel replicas hold different parameters after step " + std::to_string(step));
    worker_->check_copies_agree(step);
  }

  // The worker, its parameters whole (ZeRO-1's gathers waited for).
  Worker& worker() {
    sync_.wait_params();
    return *worker_;
  }
  // Whether some rank had received a preemption signal by the last step's loss reduction; the
  // same answer on every rank.
  bool preempted() const { return preempted_; }

  // Waits for ZeRO-1's last gathers (nothing may be left in flight when the run ends).
  void wait_params() { sync_.wait_params(); }

  CheckpointState& checkpoint_state() { return checkpoint_state_; }
  // This rank's tensors from the checkpoint file `path`, by global name.
  void restore(const std::string& path) {
    sync_.wait_params();  // no gather may still write into the parameters being replaced
    checkpoint_state_.restore(path);
  }

 private:
  // Fault injection for tests (FaultInjection): as if the backward pass had produced `value` in
  // the middle of this rank's gradients, before any reduction sees it.
  void inject(float value) {
    const auto grads = worker_->grads();
    worker_->ops().upload(&value, grads.subspan(grads.size() / 2, 1));
  }

  // train.spike_policy on a step with a finite loss and norm: a spike (the verdicts of every rank
  // combined, so all act alike) is skipped or marked for rollback and returned; anything else
  // enters the window. Throws CollectiveError after more than train.max_skips spikes in a row.
  std::optional<SpikeEvent> judge_spike(double loss, double grad_norm, int64_t step_number) {
    if (c_.train.spike_policy == SpikePolicy::kOff) return std::nullopt;
    const SpikeVerdict verdict = spikes_.judge(loss, grad_norm);
    const double votes = comms_.dp.all_reduce_sum(comms_.pp.all_reduce_sum(verdict.spike ? 1.0 : 0.0));
    if (votes == 0) {
      spikes_.admit(loss, grad_norm);
      spikes_.note_admitted(step_number);
      return std::nullopt;
    }
    if (const int streak = spikes_.note_spike(step_number); streak > c_.train.max_skips) {
      throw CollectiveError("loss or gradient-norm spike at step " + std::to_string(step_number) + ": " +
                            std::to_string(streak) + " in a row, more than train.max_skips = " +
                            std::to_string(c_.train.max_skips) + " (lower train.lr or raise train.warmup)");
    }
    rollback_ = c_.train.spike_policy == SpikePolicy::kRollback;
    return SpikeEvent{rollback_ ? "rollback" : "skip", step_number, loss, grad_norm, verdict.loss_z, verdict.norm_z};
  }

  // The norm over every gradient element of the model once: each rank holds its stage's, all of
  // them or (ZeRO-1) a shard, less a tied embedding's second copy; reductions over the stages and,
  // with shards, over the group add the parts up.
  double global_grad_norm() {
    VectorOps<float>& ops = worker_->ops();
    const auto grads = sync_.owned_grads();
    const auto [dup_begin, dup_end] = worker_->duplicate_range();
    auto part = [&](int64_t from, int64_t to) {
      return ops.sum_squares(grads.subspan(static_cast<size_t>(from), static_cast<size_t>(to - from)));
    };
    double norm_sq = 0.0;
    bool copy_finite = true;
    int64_t local = 0;  // where the piece's gradients start in `grads`
    for (const BufferRange& piece : sync_.shard()) {
      const int64_t skip_begin = std::clamp(dup_begin, piece.begin, piece.end) - piece.begin + local;
      const int64_t skip_end = std::clamp(dup_end, piece.begin, piece.end) - piece.begin + local;
      norm_sq += part(local, skip_begin) + part(std::max(skip_end, skip_begin), local + piece.size());
      // The copy is left out of the sum but not out of the check: a non-finite value there counts.
      if (skip_end > skip_begin && !std::isfinite(part(skip_begin, skip_end))) copy_finite = false;
      local += piece.size();
    }
    if (!copy_finite) norm_sq = std::numeric_limits<double>::quiet_NaN();
    if (sync_.zero()) norm_sq = comms_.dp.all_reduce_sum(norm_sq);
    return std::sqrt(comms_.pp.all_reduce_sum(norm_sq));
  }

  // AdamW on this rank's pieces; under ZeRO-1 the updated pieces are then gathered (waited for by
  // the next forward pass, bucket by bucket, where it can). Returns the seconds spent waiting here.
  double update(double lr, int64_t step_number) {
    checkpoint_state_.fence();  // a background save may still be copying the state
    optimizer_.update(worker_->params(), sync_.owned_grads(), lr, step_number);
    const double wait = sync_.gather_params();
    worker_->params_changed();
    return wait;
  }

  // Every stage's wait and activation peak, gathered over the pipeline; the bubble is the mean
  // share of the step a stage spent waiting on its neighbours.
  PipelineMetrics pipeline_metrics(const StepWork& work, double step_time) {
    const int stages = comms_.pp.size();
    std::vector<double> values(static_cast<size_t>(3 * stages), 0.0);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    values[static_cast<size_t>(comms_.pp.rank())] = work.p2p_wait_s;
    values[static_cast<size_t>(stages + comms_.pp.rank())] = work.activation_bytes / (1 << 20);
    values[static_cast<size_t>(2 * stages + comms_.pp.rank())] = double(usage.ru_maxrss) / 1024;  // KiB on Linux
    comms_.pp.all_reduce_sum(values);
    PipelineMetrics m;
    const auto at = [&](int part) { return values.begin() + part * stages; };
    m.stage_wait_s.assign(at(0), at(1));
    m.stage_activation_mb.assign(at(1), at(2));
    m.stage_peak_rss_mb.assign(at(2), at(3));
    double wait = 0.0;
    for (double w : m.stage_wait_s) wait += w;
    m.bubble = wait / (stages * step_time);
    m.bubble_theory = pipeline::theoretical_bubble(c_.parallel.schedule, stages,
                                                   c_.micro_batches(), c_.parallel.virtual_chunks);
    return m;
  }

  const Config& c_;
  TrainComms comms_;  // host groups
  std::unique_ptr<Worker> worker_;
  GradSync sync_;
  AdamW<float> optimizer_;
  NonfinitePolicy nonfinite_;
  SpikeDetector spikes_;
  bool rollback_ = false;  // the last step's spike asks for a rollback
  std::vector<int64_t> skipped_batches_;  // sorted batch numbers (1-based) never trained on
  int64_t nan_step_ = 0;  // FaultInjection: the step (1-based) whose gradient gets a NaN here
  int64_t spike_step_ = 0;  // FaultInjection: the step (1-based) whose gradient gets spike_value_ here
  float spike_value_ = 0;
  bool spike_repeat_ = false;
  bool preempted_ = false;
  LayerProbe probe_;
  CheckpointState checkpoint_state_;
};

}  // namespace

int set_threads(int requested) {
  const int threads = requested > 0 ? requested : omp_get_num_procs();
  omp_set_num_threads(threads);
  return threads;
}

TrainSummary train(const Config& c, Comm& dp, std::ostream& progress) {
  SoloComm solo_pp, solo_embedding;
  return train(c, TrainComms{dp, solo_pp, solo_embedding, dp}, progress);
}

namespace {

// Where training resumes from: checkpoint.resume = auto (the latest in the checkpoint directory,
// if any), never, or a path.
std::optional<std::string> resume_file(const Config& c, const std::optional<checkpoint::Store>& store) {
  if (c.checkpoint.resume == "never") return std::nullopt;
  if (c.checkpoint.resume != "auto") return checkpoint::resolve(c.checkpoint.resume);
  if (!store) return std::nullopt;
  const auto latest = store->latest();
  if (!latest) return std::nullopt;
  return (std::filesystem::path(*latest) / checkpoint::kFileName).string();
}

// Loads `path` into the trainer after checking that it fits the config and, when `data` (this
// run's data_fingerprint) is given, that it was trained on the same data (unless
// checkpoint.allow_data_change). Returns its step. Collective over `world`: rank 0 verifies the
// whole file's seal once, before any rank lets HDF5 parse it; every rank then reads its part; a
// failure anywhere stops every rank with one message.
int64_t resume(RankTrainer& trainer, const Config& c, const std::string& path, Comm& world, std::ostream& progress,
               const std::string& data = "") {
  const auto start = Clock::now();
  agree(world, [&] {
    if (world.rank() == 0) checkpoint::verify(path);
  });
  checkpoint::Header header;
  std::string changed, data_changes, schedule_changes;
  agree(world, [&] {
    header = checkpoint::read_header(path);
    changed = checkpoint::compare_configs(header.config, c, "checkpoint " + path);
    schedule_changes = schedule_change(load_config_text(header.config, "checkpoint " + path).train, c.train,
                                       header.step);
    if (!data.empty() && !header.data.empty()) data_changes = describe_data_change(header.data, data);
    if (!data_changes.empty() && !c.checkpoint.allow_data_change) {
      throw UserError("checkpoint " + path + " was trained on other data than this run's:" + data_changes +
                      "\nresuming would change which samples every later step trains on; use the data it was "
                      "saved with, or resume knowingly with --checkpoint.allow_data_change=true");
    }
    trainer.restore(path);
    trainer.restore_run_state(header, "checkpoint " + path);
  });
  char took[48];
  std::snprintf(took, sizeof took, "%.2f s", seconds_since(start));
  progress << "resumed from " << path << " at step " << header.step << " (saved from " << header.layout
           << "; this rank read its part in " << took << ")\n";
  if (!changed.empty()) progress << "settings changed since the checkpoint:" << changed << "\n";
  if (!schedule_changes.empty()) {
    // Allowed (a deliberate change of the rate is), but the run is then no longer the one this
    // config describes from scratch; a horizon in train.decay_steps avoids it when train.steps grows.
    progress << "learning-rate schedule changed for the steps already done: " << schedule_changes
             << " (set train.decay_steps to keep the horizon when train.steps grows)\n";
  }
  if (!data_changes.empty()) {
    progress << "data changed since the checkpoint (checkpoint.allow_data_change = true):" << data_changes << "\n";
  }
  return header.step;
}

// train.spike_policy = rollback after a spike at step `step` (0-based): the batch that step used
// is never trained on again, and the trainer goes back to `checkpoint` (the last one this process
// saved or resumed from; never a newer one another run left in the directory). Fills in `event`
// and returns the checkpoint's step. Collective over `world`.
int64_t roll_back(RankTrainer& trainer, const Config& c, const std::string& checkpoint, int64_t step,
                  const std::string& data, Comm& world, std::ostream& progress, SpikeEvent& event) {
  event.skipped_batch = trainer.batch_of(step) + 1;
  trainer.skip_batch(event.skipped_batch);
  progress << "spike at step " << step + 1 << ": loss " << event.loss << " (" << event.loss_z << " sigma), gradient norm "
           << event.grad_norm << " (" << event.norm_z << " sigma): rolling back, batch " << event.skipped_batch
           << " skipped from now on\n";
  event.to_step = resume(trainer, c, checkpoint, world, progress, data);
  return event.to_step;
}

// run.sample_every: the start of the first validation window and what the model makes of it, as
// "PROMPT | CONTINUATION". Collective over each pipeline; touches nothing training uses.
// The prompt is stage 0's (the only stage besides the last that holds the validation data); the
// text is decoded where `tokenizer` is given (world rank 0), "" elsewhere.
std::string training_sample(RankTrainer& trainer, const Config& c, const TrainComms& comms, const TokenDataset& val,
                            const Tokenizer* tokenizer) {
  std::vector<int32_t> window(static_cast<size_t>(c.model.seq_len)), targets(window.size());
  if (comms.pp.rank() == 0) val.eval_batch(0, 1, 1, window.data(), targets.data());
  window.resize(static_cast<size_t>(training_sample_prompt_tokens(c)));
  const std::vector<int32_t> continuation =
      generate(trainer.worker(), comms.pp, c.model, window, training_sample_options(c));
  return tokenizer ? tokenizer->decode(window) + " | " + tokenizer->decode(continuation) : "";
}

// Opens the shards on the ranks that read them: the first pipeline stage (inputs) and the last
// (targets); a middle stage's datasets stay empty. Only headers are read (src/data/shard.h).
void open_data(const Config& c, const TrainComms& comms, std::optional<TokenDataset>& train_set,
               std::optional<TokenDataset>& val_set, bool training = true) {
  const int stage = comms.pp.rank(), stages = comms.pp.size();
  if (stage != 0 && stage != stages - 1) {
    train_set.emplace();
    val_set.emplace();
    return;
  }
  if (training) {
    train_set.emplace(c.data.train, c.model.vocab, c.model.seq_len, c.train.global_batch);
  } else {
    train_set.emplace();
  }
  val_set.emplace(c.data.val, c.model.vocab, c.model.seq_len);
}

// "data: train 812345 tokens in 1 shard(s), 6346 windows an epoch; val 90123 tokens; tokenizer sentencepiece 2048 (...)"
std::string describe_data(const TokenDataset& train, const TokenDataset& val, const Tokenizer* tokenizer) {
  return "data: train " + std::to_string(train.tokens()) + " tokens in " + std::to_string(train.shards().size()) +
         " shard(s), " + std::to_string(train.windows()) + " windows an epoch; val " + std::to_string(val.tokens()) +
         " tokens; tokenizer " + (tokenizer ? tokenizer->describe() : "unknown (no tokenizer file beside the shards)");
}

}  // namespace

TrainSummary train(const Config& c, const TrainComms& comms, std::ostream& progress, const FaultInjection& faults) {
  Comm& world = comms.world;
  if (c.data.train.empty()) throw UserError("config: data.train is not set (token shard files)");
  if (c.data.val.empty()) throw UserError("config: data.val is not set (token shard files)");
  const bool leader = world.rank() == 0;
  const int threads = set_threads(c.run.threads);
  // Bad inputs (data shards, the checkpoint directory, the checkpoint) are found by every rank
  // before the first collective of training, and agreed on: one message, every rank exits.
  std::optional<TokenDataset> train_set, val_set;
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<checkpoint::Store> store;
  std::optional<std::string> resume_from;
  agree(world, [&] {
    check_backend(c);
    open_data(c, comms, train_set, val_set);
    // World rank 0 describes the data, records its tokenizer and prints run.sample_every's text,
    // which needs a tokenizer file where find_data_tokenizer accepts none.
    if (leader) {
      tokenizer = c.run.sample_every > 0 ? open_data_tokenizer(c.data.train, c.model.vocab)
                                         : find_data_tokenizer(c.data.train, c.model.vocab);
      find_data_tokenizer(c.data.val, c.model.vocab);  // the validation shards' must fit model.vocab too
    }
    if (!c.checkpoint_dir().empty()) store.emplace(c.checkpoint_dir(), c.checkpoint.allow_world_writable);
    if (store && leader) store->prepare();
  });
  agree(world, [&] { resume_from = resume_file(c, store); });  // after rank 0 prepared the directory
  const TokenDataset& train_data = *train_set;
  const TokenDataset& val_data = *val_set;
  install_preemption_handlers();

  RankTrainer trainer(c, comms, faults);
  progress << trainer.describe(threads) << "\n";
  // The data's fingerprint, rank 0's for every rank: a checkpoint's header must be the same on all.
  std::string data =
      leader ? data_fingerprint(train_data, val_data, tokenizer.get(), data_tokenizer_file(c.data.train)) : "";
  if (leader) progress << describe_data(train_data, val_data, tokenizer.get()) << "\n";
  if (store) {
    uint64_t size = data.size();
    world.broadcast_bytes(std::as_writable_bytes(std::span(&size, 1)), 0);
    data.resize(size);
    world.broadcast_bytes(std::as_writable_bytes(std::span(data.data(), data.size())), 0);
  }
  const int64_t start = resume_from ? resume(trainer, c, *resume_from, world, progress, data) : 0;
  // Saves checkpoints and knows the last one, what a rollback goes back to.
  std::optional<CheckpointSaver> saver;
  if (store) saver.emplace(*store, trainer.checkpoint_state(), progress, resume_from);

  const std::filesystem::path run_dir(c.run.dir);
  std::optional<MetricsWriter> metrics;
  if (leader) {
    std::error_code error;
    std::filesystem::create_directories(run_dir, error);
    if (error) throw UserError("run.dir " + c.run.dir + ": " + error.message());
    const std::string ini = c.to_ini();
    write_file(run_dir / "config.ini", ini.data(), ini.size());
    metrics.emplace((run_dir / "metrics.jsonl").string(), start);
    write_file(run_dir / "data.txt", data.data(), data.size());
  }

  TrainSummary summary;
  summary.first_step = start;
  if (leader) {
    summary.unigram_entropy = val_data.unigram_entropy();
    summary.val_bytes_per_token = val_bytes_per_token(c.data.val, val_data.tokens(), c.model.vocab);
  }
  std::vector<double> step_times;
  const auto run_start = Clock::now();
  const int64_t stop = c.run.stop_after > 0 ? std::min(c.run.stop_after, c.train.steps) : c.train.steps;
  const std::optional<DiagnosticsWriter> diagnostics =
      leader && c.run.diag_every > 0
          ? std::optional<DiagnosticsWriter>(std::in_place, (run_dir / "diagnostics.h5").string(), c.model.layers)
          : std::nullopt;
  for (int64_t step = start; step < stop; ++step) {
    const bool diagnose = c.run.diag_every > 0 && (step == 0 || (step + 1) % c.run.diag_every == 0 ||
                                                   step + 1 == c.train.steps);
    DiagnosticsRow row;
    StepMetrics m = trainer.step(train_data, step, diagnose ? &row : nullptr);
    if (trainer.take_rollback()) {
      if (saver) saver->wait();  // the save in flight, if any, is the one to go back to
      if (saver && saver->last()) {
        // The spike's row, then the replayed steps' rows again: metrics.jsonl keeps what happened.
        const int64_t to = roll_back(trainer, c, *saver->last(), step, data, world, progress, *m.spike);
        if (leader) metrics->write(m);
        step = to - 1;
        continue;
      }
      m.spike->action = "skip";  // nothing of this run's to roll back to yet
    }
    if (diagnostics && diagnose) diagnostics->append(row);
    step_times.push_back(m.step_time_s);
    summary.losses.push_back(m.loss);
    const bool last = m.step == c.train.steps;
    const bool evaluate = last || (c.train.eval_every > 0 && m.step % c.train.eval_every == 0);
    if (evaluate) {
      trainer.check_replicas_agree(m.step);
      m.val_loss = trainer.validation_loss(val_data);
      summary.final_val_loss = *m.val_loss;
    }
    if (leader && m.spike && m.spike->at_step == m.step) {
      progress << "spike at step " << m.step << ": loss " << m.spike->loss << " (" << m.spike->loss_z
               << " sigma), gradient norm " << m.spike->grad_norm << " (" << m.spike->norm_z << " sigma): "
               << "step skipped\n";
    }
    if (leader && (evaluate || m.spike || m.step % c.run.log_every == 0)) {
      metrics->write(m);
      const double eta = seconds_since(run_start) / double(m.step - start) * double(stop - m.step);
      progress << progress_line(m, c.train.steps, eta) << "\n" << std::flush;
    }
    if (c.run.sample_every > 0 && m.step % c.run.sample_every == 0) {
      const std::string sample = training_sample(trainer, c, comms, val_data, tokenizer.get());
      if (leader) progress << "sample at step " << m.step << ": " << printable(sample) << "\n" << std::flush;
    }
    const bool preempted = trainer.preempted();  // the same on every rank: all stop after this step
    const bool periodic = c.checkpoint.every > 0 && m.step % c.checkpoint.every == 0;
    if (saver) saver->poll();  // publishes a background save once every rank has written its part
    if (saver && (periodic || m.step == stop || preempted)) {
      // The last save and a preemption's are waited for: the process ends after them.
      saver->save(trainer.run_state(m.step, data), m.step == stop || preempted);
    }
    if (preempted) {
      summary.preempted = true;
      progress << "preempted: stopping after step " << m.step
               << (store ? " with its checkpoint saved" : " (checkpoint.dir = none: nothing saved)") << "\n";
      break;
    }
  }
  trainer.wait_params();
  if (saver) saver->wait();
  if (start >= c.train.steps) {  // resumed from the end: report where the run stands
    progress << "nothing to train: the checkpoint is at step " << start << " of " << c.train.steps << "\n";
    summary.final_val_loss = trainer.validation_loss(val_data);
  }
  // The main job's last line: what the final model writes after the first validation window's
  // start, where world rank 0 found a tokenizer to decode it with (every rank takes part).
  if (!summary.preempted && stop == c.train.steps) {
    uint8_t decodable = tokenizer ? 1 : 0;
    world.broadcast_bytes(std::as_writable_bytes(std::span(&decodable, 1)), 0);
    if (decodable) summary.final_sample = training_sample(trainer, c, comms, val_data, tokenizer.get());
  }
  if (c.run.save_final_params) {
    // In the whole model's layout, whatever the pipeline split: gathered from every stage.
    const std::vector<float> all = trainer.worker().global_params();
    if (leader) write_file(run_dir / "final_params.f32", all.data(), all.size() * sizeof(float));
  }
  // Median step time, leaving out the first (warm-up: page faults, thread start) when there are more.
  std::vector<double> steady(step_times.begin() + (step_times.size() > 1 ? 1 : 0), step_times.end());
  std::sort(steady.begin(), steady.end());
  if (!steady.empty()) summary.tokens_per_s = double(c.train.global_batch) * c.model.seq_len / steady[steady.size() / 2];
  return summary;
}

std::string sample_checkpoint(const Config& c, const TrainComms& comms, const std::string& path,
                              const std::string& prompt, const SampleOptions& options, std::ostream& progress) {
  set_threads(c.run.threads);
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int32_t> prompt_tokens;
  std::string file;
  agree(comms.world, [&] {
    check_sample_request(options, 1, c.model);  // the options first: they need no file
    check_backend(c);
    tokenizer = open_data_tokenizer(c.data.train, c.model.vocab);
    prompt_tokens = tokenizer->encode(prompt);
    check_sample_request(options, prompt_tokens.size(), c.model);
    file = checkpoint::resolve(path);
  });
  RankTrainer trainer(c, comms);
  resume(trainer, c, file, comms.world, progress);
  return tokenizer->decode(generate(trainer.worker(), comms.pp, c.model, prompt_tokens, options));
}

double evaluate_checkpoint(const Config& c, const TrainComms& comms, const std::string& path, std::ostream& progress) {
  return lesion_study(c, comms, path, progress, false).front();
}

std::vector<double> lesion_study(const Config& c, const TrainComms& comms, const std::string& path,
                                 std::ostream& progress, bool every_block) {
  set_threads(c.run.threads);
  std::optional<TokenDataset> train_set, val_set;
  std::string file;
  agree(comms.world, [&] {
    check_backend(c);
    open_data(c, comms, train_set, val_set, /*training=*/false);
    file = checkpoint::resolve(path);
  });
  const TokenDataset& val_data = *val_set;
  RankTrainer trainer(c, comms);
  resume(trainer, c, file, comms.world, progress);
  std::vector<double> losses{trainer.validation_loss(val_data)};
  for (int l = 0; every_block && l < c.model.layers; ++l) {
    trainer.worker().skip_block(l);
    losses.push_back(trainer.validation_loss(val_data));
    progress << "block " << l << " removed: validation loss " << losses.back() << "\n" << std::flush;
  }
  trainer.worker().skip_block(-1);
  return losses;
}

}  // namespace kl
