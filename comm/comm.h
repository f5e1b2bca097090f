// The communicator interface: collectives and point-to-point over one group of ranks, blocking or
// with asynchronous handles. Users receive a Comm& explicitly (constructor or argument); there is
// no global communicator. Implementations: MpiComm (comm/mpi_comm.h) over MPI on host memory,
// NcclComm (comm/nccl/nccl_comm.h) over NCCL on device memory, SoloComm (comm/solo_comm.h) for a
// group of one rank on either.
//
// Buffers are typed spans: sizes are element counts, never bytes. The float spans lie where
// memory() says (an MpiComm cannot read a GPU pointer, NCCL cannot read a host one); the doubles
// and broadcast_bytes' bytes are host memory for every implementation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace kl {

// A started operation. wait() blocks the calling thread until it completes (on device memory too:
// the result is in place when wait() returns); test() drives progress and reports completion
// without blocking. Both may be called any number of times.
class CommHandle {
 public:
  virtual ~CommHandle() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;
};
using Handle = std::unique_ptr<CommHandle>;

// Where a communicator's float buffers live.
enum class Memory { kHost, kDevice };

// While alive, the operations a communicator starts may be fused into one (NCCL: one group, so
// that a send and a receive two ranks exchange can progress together). Their handles complete
// once it has ended: wait on none of them before.
class CommGroup {
 public:
  virtual ~CommGroup() = default;
};

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Memory memory() const = 0;

  // In place: buffer = sum over ranks.
  virtual Handle all_reduce_sum(std::span<float> buffer) = 0;
  // in holds size() equal chunks; out (one chunk) = sum over ranks of chunk rank().
  virtual Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) = 0;
  // out holds size() chunks; chunk r = rank r's in (which may be chunk rank() of out itself).
  virtual Handle all_gather(std::span<const float> in, std::span<float> out) = 0;
  virtual Handle broadcast(std::span<float> buffer, int root) = 0;
  // Point-to-point. MPI matches by tag; NCCL has no tags and matches the messages between two ranks
  // in the order they were posted, so post them in the same order on both sides (the pipeline
  // schedule does) and keep tags >= 0.
  virtual Handle isend(std::span<const float> buffer, int peer, int tag) = 0;
  virtual Handle irecv(std::span<float> buffer, int peer, int tag) = 0;
  // See CommGroup; null where operations need no fusing (MPI progresses them independently).
  virtual std::unique_ptr<CommGroup> fuse() { return nullptr; }
  virtual void barrier() = 0;

  // Blocking sums of a few doubles (losses, squared norms), in host memory.
  virtual void all_reduce_sum(std::span<double> values) = 0;
  double all_reduce_sum(double value) {
    all_reduce_sum(std::span<double>(&value, 1));
    return value;
  }
  // Blocking: root's bytes into `bytes` on every rank, in host memory. For small setup messages
  // (NCCL's unique id), so that a device communicator can be bootstrapped from a host one.
  virtual void broadcast_bytes(std::span<std::byte> bytes, int root) = 0;
};

// Whether every rank of `comm` holds bit-identical `values` (a hash of the bits, compared through
// one small reduction). `values` is host memory, whatever comm.memory() says. Collective.
bool same_on_all_ranks(Comm& comm, std::span<const float> values);

// Runs `check` on every rank of `comm` (a step that can fail on bad input: reading a data shard, a
// checkpoint) and agrees on the outcome through one small reduction, so that no rank goes on into a
// collective that a failed rank will never join. If any rank threw UserError, every rank throws
// CollectiveError: with rank 0's message when rank 0 failed (it alone prints), else with each failed
// rank's own message, printed by that rank ("rank 3: ..."). Collective.
void agree(Comm& comm, const std::function<void()>& check);

}  // namespace kl
