// Executes one stage's instruction list (src/pipeline/schedule.h) for a training step: one
// exec_* function per instruction kind, chosen by std::visit. Activations and gradients travel to
// and from the neighbouring stages as non-blocking point-to-point messages: every receive is
// posted ahead of the instruction that needs it (a window of kReceivesAhead), every send returns at
// once and completes behind the following computation. Activation buffers come from the stage's
// slots, as many as the schedule declares; needing more is a hard error.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "src/data/dataset.h"
#include "src/pipeline/schedule.h"
#include "src/pipeline/stage.h"

namespace kl::pipeline {

// Where this rank's share of a training step lies.
struct StepPlan {
  uint64_t seed = 0;
  int64_t step = 0;          // 0-based optimizer step
  int64_t first_sample = 0;  // global index of this rank's first sample of the step
  int micro_batch = 1;       // sequences per micro-batch
  double loss_scale = 1.0;   // dL/dlogit per token: 1 / tokens of the global batch
  double loss_weight = 1.0;  // a micro-batch's mean loss counts this much in the step's loss
};

struct StepStats {
  double loss = 0;        // this rank's share of the step's loss (non-zero on the last stage only)
  double p2p_wait_s = 0;  // blocked on point-to-point messages
  int peak_buffers = 0;   // activation buffers held at once
};

class Engine {
 public:
  // `pipeline`: the communicator of this rank's pipeline, rank = stage.
  Engine(Stage& stage, Comm& pipeline, Schedule schedule, int micro_batches);

  // Runs the list, accumulating into the stage's gradients (the caller zeroes them). `ready` hears, as the last backward pass of each chunk completes, from which
  // gradient offset on everything is final (for the data-parallel reducer; may be empty).
  // `reduce_grads` is what ReduceGrads means for this rank (the tied-embedding sum; may be empty).
  // OptimizerStep ends the list: the caller then applies the update, which needs the gradient norm
  // over every stage.
  StepStats train_step(const TokenDataset& data, const StepPlan& plan, const GradientsReady& ready,
                       const std::function<void()>& reduce_grads);

  // Validation: forward only, without dropout, over evaluation windows [begin, begin + count) of
  // `total`, in pieces of `micro_batch`. Returns the sum of the windows' mean losses on the last
  // stage, 0 elsewhere.
  double evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total, int micro_batch);

  const Schedule& schedule() const { return schedule_; }

 private:
  static constexpr size_t kReceivesAhead = 2;
  enum class Kind { kActivation = 0, kGrad = 1, kEval = 2 };
  struct Message {
    Kind kind;
    int mb, chunk;  // the receiver's local chunk
  };
  struct Posted {
    Message message;
    int buffer;
    Handle handle;
  };

  void exec(const LoadMicroBatch& x);
  void exec(const Forward& x);
  void exec(const Backward& x);
  void exec(const BackwardInput& x);
  void exec(const BackwardWeight& x);
  void exec(const SendActivation& x);
  void exec(const RecvActivation& x);
  void exec(const SendGrad& x);
  void exec(const RecvGrad& x);
  void exec(const ReduceGrads& x);
  void exec(const OptimizerStep& x);

  void backward(int mb, int chunk, BackwardPart part);
  int take_slot(int mb, int chunk);
  void free_slot(int mb, int chunk);
  int acquire_buffer();
  void post_receives();
  void receive(const Message& message);
  void send(std::span<const float> data, int peer, int tag);
  void poll_sends();
  void wait_sends();
  int tag(Kind kind, int mb, int receiver_global_chunk) const;
  int peer_stage(int global_chunk) const { return global_chunk % stage_.layout().stages; }
  BatchPosition position(int mb) const;
  int32_t* tokens(int mb) { return tokens_.data() + int64_t{mb} * plan_.micro_batch * seq_len_; }
  int32_t* targets(int mb) { return targets_.data() + int64_t{mb} * plan_.micro_batch * seq_len_; }

  Stage& stage_;
  Comm& pipeline_;
  Schedule schedule_;
  int micro_batches_, seq_len_;
  std::vector<Message> receive_order_;  // the list's receives, in order

  // Per step.
  const TokenDataset* data_ = nullptr;
  StepPlan plan_;
  GradientsReady ready_;
  std::function<void()> reduce_grads_;
  StepStats stats_;
  size_t next_receive_ = 0;
  std::deque<Posted> posted_;
  int received_ = -1;  // buffer holding the message of the last Recv, for the next computation
  std::map<std::pair<int, int>, int> slot_of_;  // (mb, chunk) -> activation buffer
  std::vector<int> free_slots_;
  std::vector<int> final_passes_left_;  // per chunk: backward (weight) passes still to run
  int complete_from_ = 0;               // every chunk >= this has finished its backward passes

  std::vector<int32_t> tokens_, targets_;           // [micro_batches, micro_batch, seq_len]
  std::vector<std::vector<float>> message_buffers_;  // point-to-point staging, one tensor each
  std::vector<int> free_buffers_;
  std::vector<std::pair<int, Handle>> sends_;
};

}  // namespace kl::pipeline
