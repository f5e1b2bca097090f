// Operations on flat buffers of master weights, gradients and optimizer moments, wherever a
// backend keeps them (host or device memory): what the optimizer, the gradient norm, clipping,
// the replica check and checkpoints need, without knowing where the buffers live. A training step
// on a GPU therefore moves only scalars to the host; checkpoints and diagnostics copy explicitly.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace kl {

template <class T>
class VectorOps {
 public:
  // A buffer of zeroed elements in the backend's memory.
  class Buffer {
   public:
    virtual ~Buffer() = default;
    virtual std::span<T> span() = 0;
  };

  virtual ~VectorOps() = default;
  virtual std::unique_ptr<Buffer> alloc(int64_t n) = 0;
  // Zeroed host memory that download/upload move fastest (page-locked for a GPU backend), for
  // checkpoints.
  virtual std::unique_ptr<Buffer> alloc_host(int64_t n) = 0;
  // Sum of squares in double, deterministic; returns the value on the host.
  virtual double sum_squares(std::span<const T> x) = 0;
  virtual void scale(std::span<T> x, double factor) = 0;
  // One AdamW step (cpu/ops.h's formula) on matching ranges; `step` counts from 1.
  virtual void adamw(std::span<T> param, std::span<const T> grad, std::span<T> m, std::span<T> v, double lr,
                     double beta1, double beta2, double eps, double weight_decay, int64_t step) = 0;
  // Copies between the backend's memory and the host; both return once the copy is complete.
  virtual void download(std::span<const T> from, T* host) = 0;
  virtual void upload(const T* host, std::span<T> to) = 0;

  std::vector<T> to_host(std::span<const T> from) {
    std::vector<T> host(from.size());
    download(from, host.data());
    return host;
  }
};

// VectorOps from a backend (models/backend.h) whose Acc is T.
template <class Backend>
class BackendVectorOps final : public VectorOps<typename Backend::Acc> {
 public:
  using T = typename Backend::Acc;
  using Buffer = typename VectorOps<T>::Buffer;
  explicit BackendVectorOps(Backend& be) : be_(be) {}

  std::unique_ptr<Buffer> alloc(int64_t n) override { return std::make_unique<Owned>(be_.template alloc<T>(n)); }
  std::unique_ptr<Buffer> alloc_host(int64_t n) override {
    return std::make_unique<OwnedHost>(be_.template alloc_host<T>(n));
  }
  double sum_squares(std::span<const T> x) override {
    return be_.sum_squares(x.data(), static_cast<int64_t>(x.size()));
  }
  void scale(std::span<T> x, double factor) override { be_.scale(x.data(), static_cast<int64_t>(x.size()), factor); }
  void adamw(std::span<T> param, std::span<const T> grad, std::span<T> m, std::span<T> v, double lr, double beta1,
             double beta2, double eps, double weight_decay, int64_t step) override {
    be_.adamw(param.data(), grad.data(), m.data(), v.data(), nullptr, static_cast<int64_t>(param.size()), lr, beta1,
              beta2, eps, weight_decay, step);
  }
  void download(std::span<const T> from, T* host) override {
    be_.download(host, from.data(), static_cast<int64_t>(from.size()));
  }
  void upload(const T* host, std::span<T> to) override {
    be_.upload(to.data(), host, static_cast<int64_t>(to.size()));
  }

 private:
  struct Owned final : Buffer {
    explicit Owned(typename Backend::template Buffer<T> b) : buffer(std::move(b)) {}
    std::span<T> span() override { return {buffer.data(), static_cast<size_t>(buffer.size())}; }
    typename Backend::template Buffer<T> buffer;
  };
  struct OwnedHost final : Buffer {
    explicit OwnedHost(typename Backend::template HostBuffer<T> b) : buffer(std::move(b)) {}
    std::span<T> span() override { return {buffer.data(), static_cast<size_t>(buffer.size())}; }
    typename Backend::template HostBuffer<T> buffer;
  };
  Backend& be_;
};

}  // namespace kl
