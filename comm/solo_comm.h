// Comm for a group of one rank: collectives copy or do nothing. Lets the trainer and the tests run
// the same code path without MPI, on host or (in a CUDA build) device memory.
#pragma once

#include "comm/comm.h"

namespace kl {

class SoloComm final : public Comm {
 public:
  // A build without the CUDA backend has no device memory: kDevice there is a KL_CHECK failure.
  explicit SoloComm(Memory memory = Memory::kHost);

  int rank() const override { return 0; }
  int size() const override { return 1; }
  Memory memory() const override { return memory_; }
  Handle all_reduce_sum(std::span<float>) override { return done(); }
  Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) override { return copy(in, out); }
  Handle all_gather(std::span<const float> in, std::span<float> out) override { return copy(in, out); }
  Handle broadcast(std::span<float>, int root) override;
  Handle isend(std::span<const float>, int, int) override { no_peers(); }
  Handle irecv(std::span<float>, int, int) override { no_peers(); }
  void barrier() override {}
  void all_reduce_sum(std::span<double>) override {}
  using Comm::all_reduce_sum;
  void broadcast_bytes(std::span<std::byte>, int root) override;

 private:
  static Handle done();
  // Device memory: synchronous with the whole device (cudaDeviceSynchronize before and after),
  // because a SoloComm knows no stream to order with. Slow, but a single GPU has nothing to gather.
  Handle copy(std::span<const float> in, std::span<float> out) const;
  [[noreturn]] static void no_peers();

  Memory memory_;
};

}  // namespace kl
