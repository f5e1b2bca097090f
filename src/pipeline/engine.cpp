#include "src/pipeline/engine.h"

#include <algorithm>
#include <chrono>

#include "src/util/error.h"

namespace kl::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Engine::Engine(Stage& stage, Comm& pipeline, Schedule schedule, int micro_batches)
    : stage_(stage),
      pipeline_(pipeline),
      schedule_(std::move(schedule)),
      micro_batches_(micro_batches),
      seq_len_(stage.config().seq_len) {
  KL_CHECK(pipeline_.size() == stage_.layout().stages, "the pipeline communicator has one rank per stage");
  KL_CHECK(schedule_.buffers <= stage_.buffers(), "the stage has fewer activation buffers than the schedule declares");
  for (const Instruction& instruction : schedule_.instructions) {
    if (const auto* r = std::get_if<RecvActivation>(&instruction)) receive_order_.push_back({Kind::kActivation, r->mb, r->chunk});
    if (const auto* r = std::get_if<RecvGrad>(&instruction)) receive_order_.push_back({Kind::kGrad, r->mb, r->chunk});
  }
}

int Engine::tag(Kind kind, int mb, int receiver_global_chunk) const {
  const int chunks = stage_.layout().stages * stage_.layout().chunks;
  return ((mb * chunks) + receiver_global_chunk) * 3 + static_cast<int>(kind);
}

BatchPosition Engine::position(int mb) const {
  return {plan_.seed, plan_.step, plan_.first_sample + int64_t{mb} * plan_.micro_batch};
}

StepStats Engine::train_step(const TokenDataset& data, const StepPlan& plan, const GradientsReady& ready,
                             const std::function<void()>& reduce_grads) {
  data_ = &data;
  plan_ = plan;
  ready_ = ready;
  reduce_grads_ = reduce_grads;
  stats_ = {};
  tokens_.resize(static_cast<size_t>(int64_t{micro_batches_} * plan.micro_batch * seq_len_));
  targets_.resize(tokens_.size());
  free_slots_.clear();
  for (int i = schedule_.buffers - 1; i >= 0; --i) free_slots_.push_back(i);
  final_passes_left_.assign(static_cast<size_t>(stage_.layout().chunks), micro_batches_);
  complete_from_ = stage_.layout().chunks;
  next_receive_ = 0;
  received_ = -1;
  post_receives();
  for (const Instruction& instruction : schedule_.instructions) {
    std::visit([this](const auto& x) { exec(x); }, instruction);
  }
  KL_CHECK(slot_of_.empty() && posted_.empty() && sends_.empty(), "a pipeline step ended with work in flight");
  return stats_;
}

// --- activation buffers and message buffers ---

int Engine::take_slot(int mb, int chunk) {
  KL_CHECK(!free_slots_.empty(), "the schedule holds more activations than the " +
                                     std::to_string(schedule_.buffers) + " buffers it declares");
  const int slot = free_slots_.back();
  free_slots_.pop_back();
  slot_of_[{mb, chunk}] = slot;
  stats_.peak_buffers = std::max(stats_.peak_buffers, static_cast<int>(slot_of_.size()));
  return slot;
}

void Engine::free_slot(int mb, int chunk) {
  const auto it = slot_of_.find({mb, chunk});
  KL_CHECK(it != slot_of_.end(), "backward of a micro-batch chunk that holds no buffer");
  free_slots_.push_back(it->second);
  slot_of_.erase(it);
}

int Engine::acquire_buffer() {
  if (free_buffers_.empty()) {
    const auto& c = stage_.config();
    message_buffers_.emplace_back(static_cast<size_t>(int64_t{plan_.micro_batch} * c.seq_len * c.d_model));
    return static_cast<int>(message_buffers_.size()) - 1;
  }
  const int index = free_buffers_.back();
  free_buffers_.pop_back();
  return index;
}

// --- point-to-point ---

void Engine::post_receives() {
  const StageLayout& layout = stage_.layout();
  while (posted_.size() < kReceivesAhead && next_receive_ < receive_order_.size()) {
    const Message m = receive_order_[next_receive_++];
    const int global = layout.global_chunk(m.chunk);
    const int sender = m.kind == Kind::kActivation ? global - 1 : global + 1;
    const int buffer = acquire_buffer();
    std::span<float> into(message_buffers_[static_cast<size_t>(buffer)]);
    posted_.push_back({m, buffer, pipeline_.irecv(into, peer_stage(sender), tag(m.kind, m.mb, global))});
  }
}

void Engine::receive(const Message& m) {
  post_receives();
  KL_CHECK(!posted_.empty() && posted_.front().message.kind == m.kind && posted_.front().message.mb == m.mb &&
               posted_.front().message.chunk == m.chunk,
           "a receive out of the schedule's order");
  const auto start = Clock::now();
  posted_.front().handle->wait();
  stats_.p2p_wait_s += seconds_since(start);
  received_ = posted_.front().buffer;
  posted_.pop_front();
  post_receives();
}

void Engine::send(std::span<const float> data, int peer, int tag) {
  const int buffer = acquire_buffer();
  std::vector<float>& staging = message_buffers_[static_cast<size_t>(buffer)];
  KL_CHECK(data.size() <= staging.size(), "a pipeline message larger than its staging buffer");
  std::copy(data.begin(), data.end(), staging.begin());
  sends_.emplace_back(buffer, pipeline_.isend(std::span<const float>(staging.data(), data.size()), peer, tag));
  poll_sends();
}

void Engine::poll_sends() {
  for (size_t i = 0; i < sends_.size();) {
    if (sends_[i].second->test()) {
      free_buffers_.push_back(sends_[i].first);
      sends_.erase(sends_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
}

void Engine::wait_sends() {
  const auto start = Clock::now();
  for (auto& [buffer, handle] : sends_) {
    handle->wait();
    free_buffers_.push_back(buffer);
  }
  sends_.clear();
  stats_.p2p_wait_s += seconds_since(start);
}

// --- the instructions ---

void Engine::exec(const LoadMicroBatch& x) {
  data_->training_batch(plan_.seed, plan_.step, position(x.mb).first_sample, plan_.micro_batch,
                        tokens(x.mb), targets(x.mb));
}

void Engine::exec(const RecvActivation& x) { receive({Kind::kActivation, x.mb, x.chunk}); }
void Engine::exec(const RecvGrad& x) { receive({Kind::kGrad, x.mb, x.chunk}); }

void Engine::exec(const Forward& x) {
  const int slot = take_slot(x.mb, x.chunk);
  const bool embeds = stage_.layout().first_chunk(x.chunk);
  KL_CHECK(embeds || received_ >= 0, "a forward without its input activation");
  const float* input = embeds ? nullptr : message_buffers_[static_cast<size_t>(received_)].data();
  const double loss = stage_.forward(slot, x.chunk, plan_.micro_batch, input, tokens(x.mb), targets(x.mb),
                                     position(x.mb), /*training=*/true);
  stats_.loss += loss * plan_.loss_weight;
  if (!embeds) {
    free_buffers_.push_back(received_);
    received_ = -1;
  }
  poll_sends();
}

void Engine::exec(const SendActivation& x) {
  const int global = stage_.layout().global_chunk(x.chunk);
  send(stage_.output(slot_of_.at({x.mb, x.chunk}), x.chunk, plan_.micro_batch), peer_stage(global + 1),
       tag(Kind::kActivation, x.mb, global + 1));
}

void Engine::exec(const SendGrad& x) {
  const int global = stage_.layout().global_chunk(x.chunk);
  send(stage_.input_grad(plan_.micro_batch), peer_stage(global - 1), tag(Kind::kGrad, x.mb, global - 1));
}

void Engine::exec(const Backward& x) {
  backward(x.mb, x.chunk, BackwardPart::kAll);
  free_slot(x.mb, x.chunk);
}

void Engine::exec(const BackwardInput& x) { backward(x.mb, x.chunk, BackwardPart::kInput); }

void Engine::exec(const BackwardWeight& x) {
  backward(x.mb, x.chunk, BackwardPart::kWeight);
  free_slot(x.mb, x.chunk);
}

void Engine::exec(const ReduceGrads&) {
  wait_sends();
  if (reduce_grads_) reduce_grads_();
}

void Engine::exec(const OptimizerStep&) {}  // the caller's: see train_step

// The gradients of chunk c are final after its last backward (weight) pass. The reducer may start
// on everything from chunk c's first gradient on once every chunk above c is final as well (the
// buffer holds chunks in ascending order, the head after them), so only then does the pass report
// block by block; when a pass completes chunks below others still running, the report waits.
void Engine::backward(int mb, int chunk, BackwardPart part) {
  const bool takes_grad = part != BackwardPart::kWeight && !stage_.layout().last_chunk(chunk);
  KL_CHECK(!takes_grad || received_ >= 0, "a backward without its output gradient");
  const float* grad_output = takes_grad ? message_buffers_[static_cast<size_t>(received_)].data() : nullptr;
  const bool final_pass = part != BackwardPart::kInput;
  int& left = final_passes_left_[static_cast<size_t>(chunk)];
  if (final_pass) --left;
  const bool report = ready_ && final_pass && left == 0 && complete_from_ == chunk + 1;
  stage_.backward(slot_of_.at({mb, chunk}), chunk, plan_.micro_batch, part, grad_output, tokens(mb), targets(mb),
                  position(mb), plan_.loss_scale, report ? ready_ : GradientsReady{});
  if (takes_grad) {
    free_buffers_.push_back(received_);
    received_ = -1;
  }
  const int before = complete_from_;
  while (complete_from_ > 0 && final_passes_left_[static_cast<size_t>(complete_from_ - 1)] == 0) --complete_from_;
  if (ready_ && complete_from_ != before) ready_(stage_.chunk_offset(complete_from_));
  poll_sends();
}

double Engine::evaluate_sum(const TokenDataset& data, int64_t begin, int64_t count, int64_t total,
                            int micro_batch) {
  const StageLayout& layout = stage_.layout();
  plan_.micro_batch = micro_batch;
  tokens_.resize(std::max(tokens_.size(), static_cast<size_t>(int64_t{micro_batch} * seq_len_)));
  targets_.resize(tokens_.size());
  double sum = 0.0;
  int piece = 0;
  for (int64_t first = begin; first < begin + count; first += micro_batch, ++piece) {
    const int B = static_cast<int>(std::min<int64_t>(micro_batch, begin + count - first));
    data.eval_batch(first, B, total, tokens_.data(), targets_.data());
    for (int chunk = 0; chunk < layout.chunks; ++chunk) {
      const int global = layout.global_chunk(chunk);
      const float* input = nullptr;
      int buffer = -1;
      if (!layout.first_chunk(chunk)) {
        buffer = acquire_buffer();
        std::span<float> into(message_buffers_[static_cast<size_t>(buffer)].data(),
                              static_cast<size_t>(int64_t{B} * seq_len_ * stage_.config().d_model));
        pipeline_.irecv(into, peer_stage(global - 1), tag(Kind::kEval, piece, global))->wait();
        input = into.data();
      }
      const double loss = stage_.forward(0, chunk, B, input, tokens_.data(), targets_.data(), {}, /*training=*/false);
      if (buffer >= 0) free_buffers_.push_back(buffer);
      if (layout.last_chunk(chunk)) {
        sum += loss * B;
      } else {
        send(stage_.output(0, chunk, B), peer_stage(global + 1), tag(Kind::kEval, piece, global + 1));
      }
    }
  }
  wait_sends();
  return sum;
}

}  // namespace kl::pipeline
