// Executes one stage's instruction list (src/pipeline/schedule.h) for a training step: one
// exec_* function per instruction kind, chosen by std::visit. Activations and gradients travel to
// and from the neighbouring stages as non-blocking point-to-point messages: every receive is
// posted ahead of the instruction that needs it (a window of kReceivesAhead), every send returns at
// once and completes behind the following computation. On communicators that fuse operations
// (NCCL, whose sends block its stream until matched) nothing is posted ahead: a send goes out in one
// group with the point-to-point instructions after it up to the next computation, a receive
// included, and each direction has a communicator of its own; src/pipeline/simulator.h's
// check_rendezvous proves that deadlock-free for every schedule (tests/test_schedule.cpp). Activation buffers come from the stage's
// slots, as many as the schedule declares; needing more is a hard error.
//
// The list is the whole step: ReduceGrads and OptimizerStep run the hooks the rank's trainer
// supplies (the gradient sync; the norm, clipping, the non-finite policy and AdamW). A single
// process runs the same engine as a one-stage 1F1B pipeline (F0 B0 F1 B1 ... in one buffer).
//
// Templated on the stage's backend (models/backend.h): message buffers live in its memory and the
// pipeline communicator must accept that memory (MPI: host, NCCL: device). Definitions in
// engine_impl.h.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "src/data/dataset.h"
#include "src/pipeline/schedule.h"
#include "src/pipeline/stage.h"

namespace kl::pipeline {

// What ReduceGrads and OptimizerStep mean for this rank, and who hears of finished gradients.
struct StepHooks {
  GradientsReady ready;  // as each chunk's last backward pass completes (may be empty)
  ParamsNeeded needed;   // before a training forward pass reads parameters (may be empty)
  std::function<void()> grads_zeroed;       // after the gradients are zeroed (fault injection; may be empty)
  std::function<void()> reduce_grads;       // ReduceGrads: the sums over replicas and tied copies
  std::function<void(double loss)> optimizer_step;  // OptimizerStep, with this rank's share of the loss
};

// Where this rank's share of a training step lies.
struct StepPlan {
  uint64_t seed = 0;
  int64_t step = 0;          // 0-based optimizer step
  int64_t first_sample = 0;  // global index of this rank's first sample of the step
  int micro_batch = 1;       // sequences per micro-batch
  double loss_scale = 1.0;   // dL/dlogit per token: 1 / tokens of the global batch
};

struct StepStats {
  double loss = 0;        // this rank's share of the step's loss (non-zero on the last stage only)
  double p2p_wait_s = 0;  // blocked on point-to-point messages
  int peak_buffers = 0;   // activation buffers held at once
};

template <class Backend>
class Engine {
 public:
  using S = typename Backend::Acc;
  static_assert(std::is_same_v<S, float>, "pipeline messages are fp32");

  // `up` and `down`: this rank's pipeline (rank = stage) for messages to a higher and to a lower
  // stage; the same communicator where it progresses both directions independently (MPI), two
  // where each runs its operations in order on one stream (NCCL).
  Engine(Stage<Backend>& stage, Comm& up, Comm& down, Schedule schedule, int micro_batches);

  // Runs the list: zeroes the stage's gradients, accumulates the micro-batches' into them, and
  // executes ReduceGrads and OptimizerStep through `hooks`. `ready` hears, as the last backward pass
  // of each chunk completes, from which gradient offset on everything is final.
  StepStats train_step(const TokenDataset& data, const StepPlan& plan, const StepHooks& hooks);

  // Validation: forward only, without dropout, over evaluation windows [begin, begin + count) of
  // `total`, in pieces of `micro_batch`. Returns the sum of the windows' mean losses on the last
  // stage, 0 elsewhere.
  double evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total, int micro_batch);

  // Sampling: forward only, without dropout, of one window of seq_len tokens (read on the first
  // stage). Returns, on the stage that holds the head, the logits of the true vocabulary after the
  // token at `position` (causal attention: the tokens after it change nothing); empty elsewhere.
  std::vector<S> window_logits(std::span<const int32_t> window, int position);

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
  // Forward only through every chunk of B sequences of tokens_ / targets_ (evaluation, sampling),
  // message tags keyed by `piece`; the losses go to the stage's sum. Sends may still be in flight.
  void forward_only(int piece, int B);
  int take_slot(int mb, int chunk);
  void free_slot(int mb, int chunk);
  int acquire_buffer();
  void post_receives();
  void post_next_receive();
  void receive(const Message& message);
  void send(std::span<const S> data, int peer, int tag);
  void post_send(const Instruction& instruction);
  void post_run(const Instruction& send);
  Comm& toward(int stage) { return stage > stage_.layout().stage ? up_ : down_; }
  void poll_sends();
  void wait_sends();
  int tag(Kind kind, int mb, int receiver_global_chunk) const;
  int peer_stage(int global_chunk) const { return global_chunk % stage_.layout().stages; }
  BatchPosition position(int mb) const;
  int32_t* tokens(int mb) { return tokens_.data() + int64_t{mb} * plan_.micro_batch * seq_len_; }
  int32_t* targets(int mb) { return targets_.data() + int64_t{mb} * plan_.micro_batch * seq_len_; }

  Stage<Backend>& stage_;
  Comm& up_;
  Comm& down_;
  Schedule schedule_;
  int micro_batches_, seq_len_;
  std::vector<Message> receive_order_;  // the list's receives, in order
  size_t receives_ahead_;               // kReceivesAhead, or 0 where the communicator fuses (NCCL)
  size_t pc_ = 0;                       // the instruction executing
  size_t posted_until_ = 0;             // fused: instructions before this one are posted

  // Per step.
  const TokenDataset* data_ = nullptr;
  StepPlan plan_;
  const StepHooks* hooks_ = nullptr;
  StepStats stats_;
  size_t next_receive_ = 0;
  std::deque<Posted> posted_;
  int received_ = -1;  // buffer holding the message of the last Recv, for the next computation
  std::map<std::pair<int, int>, int> slot_of_;  // (mb, chunk) -> activation buffer
  std::vector<int> free_slots_;
  std::vector<int> final_passes_left_;  // per chunk: backward (weight) passes still to run
  int complete_from_ = 0;               // every chunk >= this has finished its backward passes

  std::vector<int32_t> tokens_, targets_;           // [micro_batches, micro_batch, seq_len]
  std::vector<typename Backend::template Buffer<S>> message_buffers_;  // point-to-point staging, one tensor each
  std::vector<int> free_buffers_;
  std::vector<std::pair<int, Handle>> sends_;
};

}  // namespace kl::pipeline
