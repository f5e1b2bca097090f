// The engine's definitions, included where a backend is instantiated.
#pragma once

#include "src/pipeline/engine.h"

#include <algorithm>
#include <chrono>

#include "src/util/error.h"

namespace kl::pipeline {
namespace engine_detail {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace engine_detail

template <class Backend>
Engine<Backend>::Engine(Stage<Backend>& stage, Comm& up, Comm& down, Schedule schedule, int micro_batches)
    : stage_(stage),
      up_(up),
      down_(down),
      schedule_(std::move(schedule)),
      micro_batches_(micro_batches),
      seq_len_(stage.config().seq_len),
      receives_ahead_(up.memory() == Memory::kDevice ? 0 : kReceivesAhead) {
  KL_CHECK(up_.size() == stage_.layout().stages && down_.size() == stage_.layout().stages,
           "the pipeline communicators have one rank per stage");
  KL_CHECK(schedule_.buffers <= stage_.buffers(), "the stage has fewer activation buffers than the schedule declares");
  for (const Instruction& instruction : schedule_.instructions) {
    if (const auto* r = std::get_if<RecvActivation>(&instruction)) receive_order_.push_back({Kind::kActivation, r->mb, r->chunk});
    if (const auto* r = std::get_if<RecvGrad>(&instruction)) receive_order_.push_back({Kind::kGrad, r->mb, r->chunk});
  }
}

template <class Backend>
int Engine<Backend>::tag(Kind kind, int mb, int receiver_global_chunk) const {
  const int chunks = stage_.layout().stages * stage_.layout().chunks;
  return ((mb * chunks) + receiver_global_chunk) * 3 + static_cast<int>(kind);
}

template <class Backend>
BatchPosition Engine<Backend>::position(int mb) const {
  return {plan_.seed, plan_.step, plan_.first_sample + int64_t{mb} * plan_.micro_batch};
}

template <class Backend>
StepStats Engine<Backend>::train_step(const TokenDataset& data, const StepPlan& plan, const StepHooks& hooks) {
  data_ = &data;
  plan_ = plan;
  hooks_ = &hooks;
  stats_ = {};
  stage_.zero_grads();
  if (hooks.grads_zeroed) hooks.grads_zeroed();
  tokens_.resize(static_cast<size_t>(int64_t{micro_batches_} * plan.micro_batch * seq_len_));
  targets_.resize(tokens_.size());
  free_slots_.clear();
  for (int i = schedule_.buffers - 1; i >= 0; --i) free_slots_.push_back(i);
  final_passes_left_.assign(static_cast<size_t>(stage_.layout().chunks), micro_batches_);
  complete_from_ = stage_.layout().chunks;
  next_receive_ = 0;
  received_ = -1;
  post_receives();
  posted_until_ = 0;
  for (pc_ = 0; pc_ < schedule_.instructions.size(); ++pc_) {
    std::visit([this](const auto& x) { exec(x); }, schedule_.instructions[pc_]);
  }
  KL_CHECK(slot_of_.empty() && posted_.empty() && sends_.empty(), "a pipeline step ended with work in flight");
  hooks_ = nullptr;
  return stats_;
}

// --- activation buffers and message buffers ---

template <class Backend>
int Engine<Backend>::take_slot(int mb, int chunk) {
  KL_CHECK(!free_slots_.empty(), "the schedule holds more activations than the " +
                                     std::to_string(schedule_.buffers) + " buffers it declares");
  const int slot = free_slots_.back();
  free_slots_.pop_back();
  slot_of_[{mb, chunk}] = slot;
  stats_.peak_buffers = std::max(stats_.peak_buffers, static_cast<int>(slot_of_.size()));
  return slot;
}

template <class Backend>
void Engine<Backend>::free_slot(int mb, int chunk) {
  const auto it = slot_of_.find({mb, chunk});
  KL_CHECK(it != slot_of_.end(), "backward of a micro-batch chunk that holds no buffer");
  free_slots_.push_back(it->second);
  slot_of_.erase(it);
}

template <class Backend>
int Engine<Backend>::acquire_buffer() {
  if (free_buffers_.empty()) {
    const auto& c = stage_.config();
    // The most any pass sends: a micro-batch of the stage's size (sampling's passes are smaller).
    message_buffers_.push_back(
        stage_.backend().template alloc<S>(int64_t{stage_.micro_batch()} * c.seq_len * c.d_model));
    return static_cast<int>(message_buffers_.size()) - 1;
  }
  const int index = free_buffers_.back();
  free_buffers_.pop_back();
  return index;
}

// --- point-to-point ---

template <class Backend>
void Engine<Backend>::post_receives() {
  while (posted_.size() < receives_ahead_ && next_receive_ < receive_order_.size()) post_next_receive();
}

template <class Backend>
void Engine<Backend>::post_next_receive() {
  const Message m = receive_order_[next_receive_++];
  const int global = stage_.layout().global_chunk(m.chunk);
  const int sender = m.kind == Kind::kActivation ? global - 1 : global + 1;
  const int buffer = acquire_buffer();
  auto& staging = message_buffers_[static_cast<size_t>(buffer)];
  std::span<float> into(staging.data(), static_cast<size_t>(staging.size()));
  posted_.push_back({m, buffer, toward(peer_stage(sender)).irecv(into, peer_stage(sender), tag(m.kind, m.mb, global))});
}

template <class Backend>
void Engine<Backend>::receive(const Message& m) {
  post_receives();
  if (posted_.empty() && next_receive_ < receive_order_.size()) post_next_receive();
  KL_CHECK(!posted_.empty() && posted_.front().message.kind == m.kind && posted_.front().message.mb == m.mb &&
               posted_.front().message.chunk == m.chunk,
           "a receive out of the schedule's order");
  const auto start = engine_detail::Clock::now();
  posted_.front().handle->wait();
  stats_.p2p_wait_s += engine_detail::seconds_since(start);
  received_ = posted_.front().buffer;
  posted_.pop_front();
  post_receives();
}

template <class Backend>
void Engine<Backend>::send(std::span<const S> data, int peer, int tag) {
  const int buffer = acquire_buffer();
  auto& staging = message_buffers_[static_cast<size_t>(buffer)];
  KL_CHECK(static_cast<int64_t>(data.size()) <= static_cast<int64_t>(staging.size()),
           "a pipeline message larger than its staging buffer");
  // Queued on the backend's stream; a device communicator (NCCL) orders its own stream after that
  // stream's work before it reads the staging buffer, so no host synchronisation is needed here.
  stage_.backend().copy(staging.data(), data.data(), static_cast<int64_t>(data.size()));
  sends_.emplace_back(buffer, toward(peer).isend(std::span<const float>(staging.data(), data.size()), peer, tag));
  poll_sends();
}

template <class Backend>
void Engine<Backend>::post_send(const Instruction& instruction) {
  if (const auto* x = std::get_if<SendActivation>(&instruction)) {
    const int global = stage_.layout().global_chunk(x->chunk);
    send(stage_.output(slot_of_.at({x->mb, x->chunk}), x->chunk, plan_.micro_batch), peer_stage(global + 1),
         tag(Kind::kActivation, x->mb, global + 1));
  } else if (const auto* x = std::get_if<SendGrad>(&instruction)) {
    const int global = stage_.layout().global_chunk(x->chunk);
    send(stage_.input_grad(plan_.micro_batch), peer_stage(global - 1), tag(Kind::kGrad, x->mb, global - 1));
  }
}

// A send; where receives are not posted ahead (NCCL), with the point-to-point instructions after it
// up to the next computation (loads skipped) in one group: their data is ready (no computation
// comes between), and the neighbours post the mirror image, so the pairs progress together
// (Megatron's batched send/recv).
template <class Backend>
void Engine<Backend>::post_run(const Instruction& instruction) {
  if (pc_ < posted_until_) return;  // posted with an earlier send's run
  if (receives_ahead_ > 0) return post_send(instruction);
  const std::unique_ptr<CommGroup> up_group = up_.fuse();
  const std::unique_ptr<CommGroup> down_group = &down_ != &up_ ? down_.fuse() : nullptr;
  post_send(instruction);
  const auto& list = schedule_.instructions;
  size_t i = pc_ + 1;
  for (; i < list.size(); ++i) {
    if (std::holds_alternative<LoadMicroBatch>(list[i])) continue;
    if (std::holds_alternative<SendActivation>(list[i]) || std::holds_alternative<SendGrad>(list[i])) {
      post_send(list[i]);
    } else if (std::holds_alternative<RecvActivation>(list[i]) || std::holds_alternative<RecvGrad>(list[i])) {
      post_next_receive();
      ++i;
      break;
    } else {
      break;
    }
  }
  posted_until_ = i;
}

template <class Backend>
void Engine<Backend>::poll_sends() {
  for (size_t i = 0; i < sends_.size();) {
    if (sends_[i].second->test()) {
      free_buffers_.push_back(sends_[i].first);
      sends_.erase(sends_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
}

template <class Backend>
void Engine<Backend>::wait_sends() {
  const auto start = engine_detail::Clock::now();
  for (auto& [buffer, handle] : sends_) {
    handle->wait();
    free_buffers_.push_back(buffer);
  }
  sends_.clear();
  stats_.p2p_wait_s += engine_detail::seconds_since(start);
}

// --- the instructions ---

template <class Backend>
void Engine<Backend>::exec(const LoadMicroBatch& x) {
  data_->training_batch(plan_.seed, plan_.step, position(x.mb).first_sample, plan_.micro_batch,
                        tokens(x.mb), targets(x.mb));
}

template <class Backend>
void Engine<Backend>::exec(const RecvActivation& x) { receive({Kind::kActivation, x.mb, x.chunk}); }
template <class Backend>
void Engine<Backend>::exec(const RecvGrad& x) { receive({Kind::kGrad, x.mb, x.chunk}); }

template <class Backend>
void Engine<Backend>::exec(const Forward& x) {
  const int slot = take_slot(x.mb, x.chunk);
  const bool embeds = stage_.layout().first_chunk(x.chunk);
  KL_CHECK(embeds || received_ >= 0, "a forward without its input activation");
  const S* input = embeds ? nullptr : message_buffers_[static_cast<size_t>(received_)].data();
  stage_.forward(slot, x.chunk, plan_.micro_batch, input, tokens(x.mb), targets(x.mb), position(x.mb),
                 /*training=*/true, hooks_->needed);
  if (!embeds) {
    free_buffers_.push_back(received_);
    received_ = -1;
  }
  poll_sends();
}

template <class Backend>
void Engine<Backend>::exec(const SendActivation&) {
  post_run(schedule_.instructions[pc_]);
}

template <class Backend>
void Engine<Backend>::exec(const SendGrad&) {
  post_run(schedule_.instructions[pc_]);
}

template <class Backend>
void Engine<Backend>::exec(const Backward& x) {
  backward(x.mb, x.chunk, BackwardPart::kAll);
  free_slot(x.mb, x.chunk);
}

template <class Backend>
void Engine<Backend>::exec(const BackwardInput& x) { backward(x.mb, x.chunk, BackwardPart::kInput); }

template <class Backend>
void Engine<Backend>::exec(const BackwardWeight& x) {
  backward(x.mb, x.chunk, BackwardPart::kWeight);
  free_slot(x.mb, x.chunk);
}

template <class Backend>
void Engine<Backend>::exec(const ReduceGrads&) {
  wait_sends();
  if (hooks_->reduce_grads) hooks_->reduce_grads();
}

// The step's loss (the sum of per-token losses scaled to the global batch's mean; non-zero on the
// last stage only) goes with the update: the non-finite policy needs it.
template <class Backend>
void Engine<Backend>::exec(const OptimizerStep&) {
  stats_.loss = stage_.take_loss_sum() * plan_.loss_scale;
  if (hooks_->optimizer_step) hooks_->optimizer_step(stats_.loss);
}

// The gradients of chunk c are final after its last backward (weight) pass. The reducer may start
// on everything from chunk c's first gradient on once every chunk above c is final as well (the
// buffer holds chunks in ascending order, the head after them), so only then does the pass report
// block by block; when a pass completes chunks below others still running, the report waits.
template <class Backend>
void Engine<Backend>::backward(int mb, int chunk, BackwardPart part) {
  const bool takes_grad = part != BackwardPart::kWeight && !stage_.layout().last_chunk(chunk);
  KL_CHECK(!takes_grad || received_ >= 0, "a backward without its output gradient");
  const S* grad_output = takes_grad ? message_buffers_[static_cast<size_t>(received_)].data() : nullptr;
  const bool final_pass = part != BackwardPart::kInput;
  int& left = final_passes_left_[static_cast<size_t>(chunk)];
  if (final_pass) --left;
  const GradientsReady& ready = hooks_->ready;
  const bool report = ready && final_pass && left == 0 && complete_from_ == chunk + 1;
  stage_.backward(slot_of_.at({mb, chunk}), chunk, plan_.micro_batch, part, grad_output, position(mb),
                  plan_.loss_scale, report ? ready : GradientsReady{});
  if (takes_grad) {
    free_buffers_.push_back(received_);
    received_ = -1;
  }
  const int before = complete_from_;
  while (complete_from_ > 0 && final_passes_left_[static_cast<size_t>(complete_from_ - 1)] == 0) --complete_from_;
  if (ready && complete_from_ != before) ready(stage_.chunk_offset(complete_from_));
  poll_sends();
}

template <class Backend>
void Engine<Backend>::forward_only(int piece, int B) {
  const StageLayout& layout = stage_.layout();
  for (int chunk = 0; chunk < layout.chunks; ++chunk) {
    const int global = layout.global_chunk(chunk);
    const S* input = nullptr;
    int buffer = -1;
    if (!layout.first_chunk(chunk)) {
      buffer = acquire_buffer();
      std::span<float> into(message_buffers_[static_cast<size_t>(buffer)].data(),
                            static_cast<size_t>(int64_t{B} * seq_len_ * stage_.config().d_model));
      toward(peer_stage(global - 1)).irecv(into, peer_stage(global - 1), tag(Kind::kEval, piece, global))->wait();
      input = into.data();
    }
    stage_.forward(0, chunk, B, input, tokens_.data(), targets_.data(), {}, /*training=*/false);
    if (buffer >= 0) free_buffers_.push_back(buffer);
    if (!layout.last_chunk(chunk)) {
      send(stage_.output(0, chunk, B), peer_stage(global + 1), tag(Kind::kEval, piece, global + 1));
    }
  }
}

template <class Backend>
double Engine<Backend>::evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total,
                            int micro_batch) {
  tokens_.resize(std::max(tokens_.size(), static_cast<size_t>(int64_t{micro_batch} * seq_len_)));
  targets_.resize(tokens_.size());
  int piece = 0;
  for (int64_t first = begin; first < begin + count; first += micro_batch, ++piece) {
    const int B = static_cast<int>(std::min<int64_t>(micro_batch, begin + count - first));
    // Only the stages that embed or score read data (the others hold no shards).
    const StageLayout& layout = stage_.layout();
    if (layout.first_chunk(0) || layout.last_chunk(layout.chunks - 1)) {
      data.eval_batch(first, B, total, tokens_.data(), targets_.data());
    }
    forward_only(piece, B);
  }
  wait_sends();
  // The sum of the windows' mean losses: their per-token losses over the sequence length.
  return stage_.take_loss_sum() / seq_len_;
}

template <class Backend>
std::vector<typename Engine<Backend>::S> Engine<Backend>::window_logits(std::span<const int32_t> window,
                                                                       int position) {
  KL_CHECK(static_cast<int>(window.size()) == seq_len_ && position >= 0 && position < seq_len_,
           "a sampling window is seq_len tokens, the position inside it");
  tokens_.resize(std::max(tokens_.size(), window.size()));
  targets_.resize(tokens_.size());
  std::copy(window.begin(), window.end(), tokens_.begin());
  std::fill_n(targets_.begin(), window.size(), 0);  // any valid token: the loss is discarded
  forward_only(0, 1);
  wait_sends();
  stage_.take_loss_sum();
  if (!stage_.layout().has_head()) return {};
  return stage_.logits(0, int64_t{position}, 1);
}

#define KL_INSTANTIATE_ENGINE(Backend) template class Engine<Backend>;

}  // namespace kl::pipeline
