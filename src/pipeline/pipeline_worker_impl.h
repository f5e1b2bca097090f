// The stage worker's definitions, included where a backend is instantiated.
#pragma once

#include <algorithm>
#include <cstdio>
#include <type_traits>

#include "src/pipeline/engine_impl.h"
#include "src/pipeline/pipeline_worker.h"
#include "src/pipeline/schedule.h"
#include "src/pipeline/stage_impl.h"
#include "src/util/error.h"

namespace kl::pipeline {

// The config the walk runs: one process runs the whole model as a one-stage 1F1B pipeline over one
// chunk (F0 B0 F1 B1 ... in one buffer), whatever schedule, chunks and split it names for pp > 1.
inline Config walk_config(Config c) {
  if (c.parallel.pp == 1) {
    c.parallel.schedule = ScheduleKind::k1F1B;
    c.parallel.virtual_chunks = 1;
    c.parallel.stage_layers.clear();
  }
  return c;
}

// With tied embeddings the first stage uses the token embedding to embed and the last as its head;
// each holds a copy, initialised alike. Their gradients are summed between the two at ReduceGrads,
// so both copies take the same updates and stay equal. The data-parallel reducer must not start on
// a copy's bucket before that sum, so its reports stop above the copy until then.
template <class Backend>
class StageWorker final : public Worker {
 public:
  StageWorker(const Config& config, const TrainComms& host, const TrainComms& data, std::unique_ptr<Backend> backend,
              std::shared_ptr<void> owned)
      : c_(walk_config(config)),
        host_(host),
        comms_(data),
        owned_(std::move(owned)),
        kind_(c_.parallel.schedule),
        be_(std::move(backend)),
        ops_(*be_),
        stage_(*be_, c_.model, stage_layout(c_, data.pp.rank()), c_.train.micro_batch,
               make_schedule(kind_, data.pp.rank(), c_.parallel.pp, c_.micro_batches(), c_.parallel.virtual_chunks)
                   .buffers,
               c_.parallel.recompute == Recompute::kBlock, kind_ == ScheduleKind::kZB1, data.dp.size()),
        engine_(stage_, data.pp, data.pipeline_down(),
                make_schedule(kind_, data.pp.rank(), c_.parallel.pp, c_.micro_batches(), c_.parallel.virtual_chunks),
                c_.micro_batches()) {
    stage_.init(static_cast<uint64_t>(c_.train.seed));
    const ParamSpec* token = stage_.table().find("embed.token.weight");
    if (c_.model.tie_embeddings && token && c_.parallel.pp > 1) {  // one stage: one tensor, no copy
      tied_ = {token->offset, token->offset + token->numel()};
      KL_CHECK(data.embedding.size() == 2, "the tied embedding's group is the first and the last stage");
    }
  }

  const ParamTable& table() const override { return stage_.table(); }
  std::span<float> params() override { return stage_.params(); }
  std::span<float> grads() override { return stage_.grads(); }
  VectorOps<float>& ops() override { return ops_; }
  const TrainComms& comms() const override { return comms_; }
  void params_changed() override { stage_.params_changed(); }
  bool forward_reads_params() const override {
    return std::is_same_v<typename Backend::Act, typename Backend::Acc>;
  }
  void collect(StreamStats* stats) override { stage_.collect(stats); }
  void skip_block(int layer) override { stage_.skip_block(layer); }

  StepWork step(const TokenDataset& data, int64_t step, const StepHooks& hooks) override {
    StepPlan plan;
    plan.seed = static_cast<uint64_t>(c_.train.seed);
    plan.step = step;
    const int per_rank = c_.train.global_batch / comms_.dp.size();
    plan.first_sample = int64_t{comms_.dp.rank()} * per_rank;
    plan.micro_batch = c_.train.micro_batch;
    plan.loss_scale = 1.0 / (double(c_.train.global_batch) * c_.model.seq_len);
    StepHooks capped = hooks;
    if (hooks.ready) {
      const int64_t floor = tied_.second;  // 0 without a tied copy
      capped.ready = [&hooks, floor](int64_t offset) { hooks.ready(std::max(offset, floor)); };
    }
    const StepStats stats = engine_.train_step(data, plan, capped);
    return {stats.loss, stats.p2p_wait_s, double(stats.peak_buffers) * double(stage_.buffer_bytes())};
  }

  double evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total) override {
    return engine_.evaluate_sum(data, begin, count, total, c_.train.micro_batch);
  }

  std::vector<float> window_logits(std::span<const int32_t> window, int position) override {
    return engine_.window_logits(window, position);
  }

  // The first stage's copy counts in the norm; the last stage's is the duplicate.
  std::pair<int64_t, int64_t> duplicate_range() const override {
    return stage_.layout().has_head() ? tied_ : std::pair<int64_t, int64_t>{0, 0};
  }

  void check_copies_agree(int64_t step) override {
    if (tied_.second == 0) return;
    const std::vector<float> copy = ops_.to_host(stage_.params().subspan(
        static_cast<size_t>(tied_.first), static_cast<size_t>(tied_.second - tied_.first)));
    KL_CHECK(same_on_all_ranks(host_.embedding, copy),
             "the first and last stage's copies of the tied embedding differ after step " + std::to_string(step));
  }

  // Stage 0 receives every other stage's tensors and places them by name.
  std::vector<float> global_params() override {
    Comm& pp = host_.pp;
    const std::vector<float> host = ops_.to_host(stage_.params());
    const std::span<const float> mine(host.data(), static_cast<size_t>(stage_.table().buffer_size()));
    if (pp.rank() != 0) {
      pp.isend(mine, 0, kGatherTag)->wait();
      return {};
    }
    const ParamTable global(c_.model);
    std::vector<float> all(static_cast<size_t>(global.buffer_size()), 0.0f);
    std::vector<float> theirs;
    for (int s = 0; s < pp.size(); ++s) {
      const StageLayout layout = stage_layout(c_, s);
      const ParamTable table(c_.model, layout.layers(), layout.has_embeddings(), layout.has_head());
      const float* source = mine.data();
      if (s != 0) {
        theirs.assign(static_cast<size_t>(table.buffer_size()), 0.0f);
        pp.irecv(theirs, s, kGatherTag)->wait();
        source = theirs.data();
      }
      for (const ParamSpec& spec : table.specs()) {
        std::copy_n(source + spec.offset, spec.numel(), all.data() + global.get(spec.name).offset);
      }
    }
    return all;
  }

  std::string describe() const override {
    char buffers[96];
    std::snprintf(buffers, sizeof buffers, "stage %d holds %d activation buffers of %.1f MB", stage_.layout().stage,
                  engine_.schedule().buffers, double(stage_.buffer_bytes()) / 1e6);
    const std::string walk = c_.parallel.pp == 1 ? "whole model" : std::string("pipeline ") + name_of(kind_);
    return walk + " on " + be_->describe() + ", " + std::to_string(c_.micro_batches()) + " micro-batches, " +
           buffers + "; " +
           pipeline::describe(partition_layers(c_.model, c_.parallel.pp * c_.parallel.virtual_chunks,
                                               stage_layer_counts(c_)),
                              c_.parallel.pp);
  }

  void sum_tied_copies() override {
    if (tied_.second == 0) return;
    const auto grads = stage_.grads().subspan(static_cast<size_t>(tied_.first),
                                              static_cast<size_t>(tied_.second - tied_.first));
    comms_.embedding.all_reduce_sum(grads)->wait();
  }

 private:
  static constexpr int kGatherTag = 1 << 20;

  const Config c_;  // walk_config's
  TrainComms host_, comms_;  // host groups; the groups that move this backend's buffers
  std::shared_ptr<void> owned_;  // what comms_ needs kept alive (a GPU run's NCCL communicators)
  ScheduleKind kind_;
  std::unique_ptr<Backend> be_;
  BackendVectorOps<Backend> ops_;
  Stage<Backend> stage_;
  Engine<Backend> engine_;
  std::pair<int64_t, int64_t> tied_{0, 0};  // this stage's copy of a tied token embedding
};

template <class Backend>
std::unique_ptr<Worker> make_stage_worker(const Config& config, const TrainComms& host, const TrainComms& data,
                                          std::unique_ptr<Backend> backend, std::shared_ptr<void> owned) {
  return std::make_unique<StageWorker<Backend>>(config, host, data, std::move(backend), std::move(owned));
}

#define KL_INSTANTIATE_STAGE_WORKER(Backend)                                                      \
  KL_INSTANTIATE_ENGINE(Backend)                                                                  \
  template std::unique_ptr<Worker> make_stage_worker<Backend>(const Config&, const TrainComms&, \
                                                              const TrainComms&, std::unique_ptr<Backend>, \
                                                              std::shared_ptr<void>);

}  // namespace kl::pipeline
