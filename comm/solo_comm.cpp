#include "comm/solo_comm.h"

#include <algorithm>

#include "src/util/error.h"

#ifdef KL_HAVE_CUDA
#include "src/check/cuda.h"
#endif

namespace kl {
namespace {

struct Done final : CommHandle {
  void wait() override {}
  bool test() override { return true; }
};

void check_root(int root) { KL_CHECK(root == 0, "a one-rank group's only root is rank 0"); }

}  // namespace

SoloComm::SoloComm(Memory memory) : memory_(memory) {
#ifndef KL_HAVE_CUDA
  KL_CHECK(memory == Memory::kHost, "a build without the CUDA backend has no device memory to communicate");
#endif
}

Handle SoloComm::done() { return std::make_unique<Done>(); }

Handle SoloComm::broadcast(std::span<float>, int root) {
  check_root(root);
  return done();
}

void SoloComm::broadcast_bytes(std::span<std::byte>, int root) { check_root(root); }

Handle SoloComm::copy(std::span<const float> in, std::span<float> out) const {
  KL_CHECK(in.size() == out.size(), "a one-rank group's chunk is the whole buffer");
  if (in.data() == out.data() || in.empty()) return done();
  if (memory_ == Memory::kHost) {
    std::copy(in.begin(), in.end(), out.begin());
  } else {
#ifdef KL_HAVE_CUDA
    KL_CHECK_CUDA(cudaDeviceSynchronize());  // `in` is written by work on some stream
    KL_CHECK_CUDA(cudaMemcpy(out.data(), in.data(), in.size_bytes(), cudaMemcpyDeviceToDevice));
    KL_CHECK_CUDA(cudaDeviceSynchronize());  // a device-to-device cudaMemcpy may return early
#endif
  }
  return done();
}

void SoloComm::no_peers() { fatal(__FILE__, __LINE__, "isend/irecv", "a one-rank group has no peer to talk to"); }

}  // namespace kl
