// Comm over NCCL (built with the CUDA backend only): the collectives and point-to-point calls of
// comm/comm.h on DEVICE buffers, on a stream of the communicator's own.
//
// Ordering with events, no host synchronisation: each call records an event on the compute stream
// and makes the communication stream wait for it (the data is ready), launches the NCCL operation
// and records a completion event. Handle::wait() makes the compute stream wait for that event and
// returns at once: work queued on the compute stream afterwards sees the result (the optimizer step
// after the gradient all-reduce, say). test() asks whether the operation has finished. A host that
// reads a result synchronises the compute stream itself.
//
// Host values (the blocking all_reduce_sum of doubles: losses, squared norms) and barrier() go
// over the MPI communicator the NCCL one was bootstrapped from.
//
// Point-to-point: NCCL has no tags and matches sends and receives between two ranks in posting
// order; `tag` is checked for sign only. A send and a receive between the same two ranks must be
// posted inside one group() or they can deadlock on the GPU (both ranks sending first).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <vector>

#include "comm/comm.h"
#include "comm/mpi_comm.h"

namespace kl {

class NcclComm final : public Comm {
 public:
  // Collective over `mpi` (whose ranks become this communicator's, in order): rank 0 makes NCCL's
  // unique id, MPI broadcasts it, every rank joins. Every rank must have chosen its GPU first
  // (cuda::select_device). `compute` is the stream whose work the operations follow and precede.
  NcclComm(MpiComm& mpi, cudaStream_t compute);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Handle all_reduce_sum(std::span<float> buffer) override;
  Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) override;
  Handle all_gather(std::span<const float> in, std::span<float> out) override;
  Handle broadcast(std::span<float> buffer, int root) override;
  Handle isend(std::span<const float> buffer, int peer, int tag) override;
  Handle irecv(std::span<float> buffer, int peer, int tag) override;
  void barrier() override;
  void all_reduce_sum(std::span<double> values) override;
  using Comm::all_reduce_sum;

  // While a Group lives, calls are fused into one NCCL group (ncclGroupStart/End); their handles
  // complete together when it ends.
  class Group {
   public:
    explicit Group(NcclComm& comm);
    ~Group();
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;

   private:
    NcclComm& comm_;
  };
  Group group() { return Group(*this); }

  cudaStream_t stream() const { return stream_; }

 private:
  struct Event;
  class Request;
  void before_operation();  // the communication stream waits for the compute stream's work so far
  Handle after_operation();  // the completion handle (deferred to the group's end inside a group)

  MpiComm& mpi_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  int group_depth_ = 0;
  std::vector<std::shared_ptr<Event>> group_events_;  // the pending handles' shared completion event
};

}  // namespace kl
