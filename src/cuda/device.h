// The GPU a process uses and the memory it holds there (CUDA backend only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "src/check/cuda.h"

namespace kl::cuda {

// Whether this process sees a usable GPU; when not, `why` says what CUDA reported.
bool device_available(std::string* why = nullptr);

// Chooses this process's GPU from its node-local rank (comm/device_setup.h) and makes it current.
// Throws UserError (exit status 2) when there is none: "run.device = cuda: no CUDA device: ...".
int select_device();

// An array in device memory, allocated once (a training step allocates nothing).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t n) : size_(n) {
    if (n > 0) KL_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&data_), static_cast<size_t>(n) * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }

  // Copies between this buffer's first elements and host memory, ordered on `stream`.
  void upload(std::span<const T> host, cudaStream_t stream) {
    KL_CHECK(static_cast<int64_t>(host.size()) <= size_, "upload larger than the device buffer");
    KL_CHECK_CUDA(cudaMemcpyAsync(data_, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, stream));
  }
  void download(std::span<T> host, cudaStream_t stream) const {
    KL_CHECK(static_cast<int64_t>(host.size()) <= size_, "download larger than the device buffer");
    KL_CHECK_CUDA(cudaMemcpyAsync(host.data(), data_, host.size_bytes(), cudaMemcpyDeviceToHost, stream));
  }
  void zero(cudaStream_t stream) {
    if (size_ > 0) KL_CHECK_CUDA(cudaMemsetAsync(data_, 0, static_cast<size_t>(size_) * sizeof(T), stream));
  }

 private:
  T* data_ = nullptr;
  int64_t size_ = 0;
};

// Zeroed page-locked host memory: copies to and from the device run at full speed and without a
// staging copy (checkpoints).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(int64_t n) : size_(n) {
    if (n <= 0) return;
    KL_CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&data_), static_cast<size_t>(n) * sizeof(T)));
    std::memset(static_cast<void*>(data_), 0, static_cast<size_t>(n) * sizeof(T));
  }
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  PinnedBuffer(PinnedBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace kl::cuda
