// Comm over NCCL (built with the CUDA backend only): the collectives and point-to-point calls of
// comm/comm.h on DEVICE buffers (memory() is kDevice; a host pointer is refused), on a stream of
// the communicator's own.
//
// Ordering with events: each call makes the communication stream wait for the work queued on the
// compute stream so far (the data is ready), launches the NCCL operation and records a completion
// event, taken from a small pool. Handle::wait() blocks the host until that event has passed, as
// comm.h promises (afterwards the compute stream's later work sees the result as well); test()
// reports whether it has. While waiting it polls ncclCommGetAsyncError (an error ends the job) and
// the watchdog (comm/watchdog.h): past parallel.timeout_s it prints the same per-rank report as an
// MpiComm, aborts the NCCL communicator and exits with kExitCommTimeout.
//
// Host values (the blocking all_reduce_sum of doubles: losses, squared norms), broadcast_bytes and
// barrier() go over the host communicator this one was bootstrapped from, which must outlive it.
//
// Point-to-point: NCCL has no tags; it matches the sends and receives between two ranks in the
// order they were posted, so both sides must post them in the same order (the pipeline schedule
// does); `tag` is only checked to be >= 0. The operations of one NcclComm run one after another on
// its stream, and an NCCL send blocks that stream until the peer's receive runs: a send and a
// receive that two ranks exchange must be posted inside one group(), or each rank's send waits for
// a receive queued behind the other's send.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>

#include "comm/comm.h"

namespace kl {

class NcclComm final : public Comm {
 public:
  // Collective over `host` (host memory; its ranks become this communicator's, in order): rank 0
  // makes NCCL's unique id, host.broadcast_bytes sends it, every rank joins on the GPU current to
  // the calling thread, which each rank must have chosen first (cuda::select_device, one per rank).
  // `compute` is the stream whose work the operations follow.
  NcclComm(Comm& host, cudaStream_t compute);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Memory memory() const override { return Memory::kDevice; }
  Handle all_reduce_sum(std::span<float> buffer) override;
  Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) override;
  Handle all_gather(std::span<const float> in, std::span<float> out) override;
  Handle broadcast(std::span<float> buffer, int root) override;
  Handle isend(std::span<const float> buffer, int peer, int tag) override;
  Handle irecv(std::span<float> buffer, int peer, int tag) override;
  // Every rank's device work queued so far has finished (watched like wait()), then the host barrier.
  void barrier() override;
  void all_reduce_sum(std::span<double> values) override;
  using Comm::all_reduce_sum;
  void broadcast_bytes(std::span<std::byte> bytes, int root) override;

  // While a Group lives, calls are fused into one NCCL group (ncclGroupStart/End); their handles
  // complete together once it has ended. Waiting on one inside the group is an error (it would
  // wait forever); test() says false until then.
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
  std::unique_ptr<CommGroup> fuse() override;

  cudaStream_t stream() const { return stream_; }
  int events_made() const;  // completion events created so far: stays small (the pool reuses them)

 private:
  class Core;  // the NCCL communicator and the event pool: shared with the handles, which may outlive this
  struct Completion;
  class Request;

  // Around each NCCL call: begin numbers the operation for the watchdog and orders the
  // communication stream after the compute stream's work; end returns its handle, whose event is
  // recorded now or, inside a group, when the group ends.
  uint64_t begin(const char* kind, int peer, size_t bytes);
  Handle end(uint64_t seq);
  void require_device(const void* data, const char* what) const;

  Comm& host_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // re-recorded on the compute stream by every call
  int rank_ = 0, size_ = 1;
  std::shared_ptr<Core> core_;
  int group_depth_ = 0;
  uint64_t group_last_ = 0;                  // the open group's last operation, for the watchdog
  std::shared_ptr<Completion> group_done_;  // the open group's shared completion
};

// Collective over `host_group` (see the constructor): a device communicator over the same ranks.
std::unique_ptr<NcclComm> make_nccl_comm(Comm& host_group, cudaStream_t compute);

}  // namespace kl
