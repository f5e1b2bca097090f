// The whole model on one GPU behind the Worker interface.
//
// The interface hands the trainer host spans of the parameters and gradients (the data-parallel
// reducer, clipping, AdamW, checkpoints and the ZeRO shards all work on them), so this worker keeps
// host mirrors: each step uploads the fp32 parameters (and refreshes the bf16 copy), runs every
// micro-batch's forward and backward on the GPU, and downloads the fp32 gradients once. The
// optimizer therefore runs on the host; the device AdamW and norm kernels (src/kernels/cuda/adamw.cu)
// are ready for a device-resident optimizer step, which needs the trainer to hand the update to
// the worker.
#include "src/cuda/cuda_worker.h"

#include <algorithm>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "src/cuda/device.h"
#include "src/cuda/gpt_cuda.h"
#include "src/util/error.h"

namespace kl::cuda {
namespace {

// Page-locked host memory: the per-step parameter and gradient copies run at full PCIe/NVLink-C2C
// speed and without a staging copy.
class PinnedFloats {
 public:
  explicit PinnedFloats(int64_t n) : size_(static_cast<size_t>(n)) {
    KL_CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&data_), size_ * sizeof(float)));
    std::fill(data_, data_ + size_, 0.0f);
  }
  ~PinnedFloats() { cudaFreeHost(data_); }
  PinnedFloats(const PinnedFloats&) = delete;
  PinnedFloats& operator=(const PinnedFloats&) = delete;
  std::span<float> span() { return {data_, size_}; }
  float* data() { return data_; }
  size_t size() const { return size_; }

 private:
  float* data_ = nullptr;
  size_t size_;
};

class Stream {
 public:
  Stream() { KL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

template <class T>
class CudaWorker final : public Worker {
 public:
  CudaWorker(const Config& c, const Comm& dp, int device)
      : c_(c),
        dp_rank_(dp.rank()),
        per_rank_(c.train.global_batch / dp.size()),
        device_(device),
        model_(c.model, c.train.micro_batch, c.parallel.recompute == "block", dp.size(), c.run.tf32, stream_.get()),
        params_(model_.buffer_elements()),
        grads_(model_.buffer_elements()),
        inputs_(static_cast<size_t>(c.train.micro_batch) * c.model.seq_len),
        targets_(inputs_.size()) {
    init_parameters(model_.table(), static_cast<uint64_t>(c.train.seed), params_.data());
  }

  ~CudaWorker() override { cudaStreamSynchronize(stream_.get()); }

  const ParamTable& table() const override { return model_.table(); }
  std::span<float> params() override { return params_.span(); }
  std::span<float> grads() override { return grads_.span(); }
  void skip_block(int layer) override { model_.skip_block(layer); }
  std::vector<float> global_params() override { return {params_.data(), params_.data() + params_.size()}; }
  void collect(StreamStats* stats) override {
    KL_CHECK(stats == nullptr, "per-layer diagnostics are not implemented on the GPU (config.cpp should have refused)");
  }

  std::string describe() const override {
    cudaDeviceProp props{};
    KL_CHECK_CUDA(cudaGetDeviceProperties(&props, device_));
    return std::string("whole model on GPU ") + std::to_string(device_) + " (" + props.name + "), " +
           c_.run.precision + (c_.run.tf32 ? ", TF32 products" : "");
  }

  // As the CPU worker: rank r takes samples [r G/dp, (r+1) G/dp) of the step in micro-batches.
  StepWork step(const TokenDataset& data, int64_t step, const GradientsReady& ready) override {
    const auto seed = static_cast<uint64_t>(c_.train.seed);
    const double tokens = double(c_.train.global_batch) * c_.model.seq_len;
    upload_params();
    model_.zero_grads();
    for_each_micro_batch(dp_rank_, per_rank_, c_.train.micro_batch, [&](int64_t first, bool /*last*/) {
      data.training_batch(seed, step, first, c_.train.micro_batch, inputs_.data(), targets_.data());
      model_.forward_backward(inputs_.data(), targets_.data(), c_.train.micro_batch, {seed, step, first},
                              1.0 / tokens);
    });
    KL_CHECK_CUDA(cudaMemcpyAsync(grads_.data(), model_.grads(), grads_.size() * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_.get()));
    StepWork work;
    work.loss = model_.take_loss_sum() / tokens;  // synchronises: the gradients are here too
    maybe_poison(step);
    if (ready) ready(0);
    return work;
  }

  double evaluate_sum(const TokenDataset& val, int64_t begin, int64_t count, int64_t total) override {
    upload_params();
    for_each_eval_batch(begin, count, c_.train.micro_batch, [&](int64_t first, int n) {
      val.eval_batch(first, n, total, inputs_.data(), targets_.data());
      model_.evaluate(inputs_.data(), targets_.data(), n);
    });
    return model_.take_loss_sum() / c_.model.seq_len;  // the sum over windows of their mean losses
  }

 private:
  // The trainer may have changed params() since the last pass (an update, a checkpoint restore).
  void upload_params() {
    KL_CHECK_CUDA(cudaMemcpyAsync(model_.master(), params_.data(), params_.size() * sizeof(float),
                                  cudaMemcpyHostToDevice, stream_.get()));
    model_.params_changed();
  }

  const Config& c_;
  int dp_rank_, per_rank_, device_;
  Stream stream_;  // declared before the model: destroyed after it
  CudaGpt<T> model_;
  PinnedFloats params_, grads_;  // host mirrors of the device's fp32 buffers
  std::vector<int32_t> inputs_, targets_;
};

}  // namespace

std::unique_ptr<Worker> make_worker(const Config& config, const Comm& dp) {
  const int device = select_device();
  if (config.run.precision == "bf16") return std::make_unique<CudaWorker<bf16>>(config, dp, device);
  return std::make_unique<CudaWorker<float>>(config, dp, device);
}

}  // namespace kl::cuda
