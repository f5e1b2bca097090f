// The communicator interface: collectives and point-to-point over one group of ranks, blocking or
// with asynchronous handles. Users receive a Comm& explicitly (constructor or argument); there is
// no global communicator. MpiComm (comm/mpi_comm.h) implements it over MPI; the NCCL
// implementation arrives with the CUDA backend behind the same interface.
//
// Buffers are typed spans: sizes are element counts, never bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace kl {

// A started operation. wait() blocks until it completes; test() drives progress and reports
// completion without blocking. Both may be called any number of times.
class CommHandle {
 public:
  virtual ~CommHandle() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;
};
using Handle = std::unique_ptr<CommHandle>;

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: buffer = sum over ranks.
  virtual Handle all_reduce_sum(std::span<float> buffer) = 0;
  // in holds size() equal chunks; out (one chunk) = sum over ranks of chunk rank().
  virtual Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) = 0;
  // out holds size() chunks; chunk r = rank r's in (which may be chunk rank() of out itself).
  virtual Handle all_gather(std::span<const float> in, std::span<float> out) = 0;
  virtual Handle broadcast(std::span<float> buffer, int root) = 0;
  virtual Handle isend(std::span<const float> buffer, int peer, int tag) = 0;
  virtual Handle irecv(std::span<float> buffer, int peer, int tag) = 0;
  virtual void barrier() = 0;

  // Blocking sums of a few doubles (losses, squared norms).
  virtual void all_reduce_sum(std::span<double> values) = 0;
  double all_reduce_sum(double value) {
    all_reduce_sum(std::span<double>(&value, 1));
    return value;
  }
};

// Whether every rank of `comm` holds bit-identical `values` (a hash of the bits, compared through
// one small reduction). Collective.
bool same_on_all_ranks(Comm& comm, std::span<const float> values);

// Runs `check` on every rank of `comm` (a step that can fail on bad input: reading a data shard, a
// checkpoint) and agrees on the outcome through one small reduction, so that no rank goes on into a
// collective that a failed rank will never join. If any rank threw UserError, every rank throws
// CollectiveError: with rank 0's message when rank 0 failed (it alone prints), else with each failed
// rank's own message, printed by that rank ("rank 3: ..."). Collective.
void agree(Comm& comm, const std::function<void()>& check);

}  // namespace kl
