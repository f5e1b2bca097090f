#include "comm/mpi_comm.h"

#include <string>

#include "comm/watchdog.h"
#include "src/check/mpi.h"
#include "src/util/error.h"

namespace kl {
namespace {

// A started non-blocking operation, numbered for the watchdog (comm/watchdog.h): waiting on it is
// watched against the deadline.
class MpiRequest final : public CommHandle {
 public:
  MpiRequest(const char* kind, int peer, int64_t bytes) : seq_(Watchdog::get().started(kind, peer, bytes)) {}
  MPI_Request* get() { return &request_; }
  void wait() override {
    if (request_ != MPI_REQUEST_NULL) {
      Watchdog::Blocked blocked(seq_);
      KL_CHECK_MPI(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    }
    Watchdog::get().completed(seq_);
  }
  bool test() override {
    int done = 0;
    KL_CHECK_MPI(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    if (done) Watchdog::get().completed(seq_);
    return done != 0;
  }
  ~MpiRequest() override {
    // A started operation must finish before its buffers go away; an abandoned handle waits.
    if (request_ != MPI_REQUEST_NULL) wait();
    Watchdog::get().completed(seq_);
  }

 private:
  MPI_Request request_ = MPI_REQUEST_NULL;
  uint64_t seq_;
};

int count_of(size_t n) {
  KL_CHECK(n <= static_cast<size_t>(INT32_MAX), "an MPI message over 2^31 elements needs splitting");
  return static_cast<int>(n);
}

}  // namespace

MpiComm::MpiComm(MPI_Comm comm) : comm_(comm) {
  KL_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  KL_CHECK_MPI(MPI_Comm_size(comm_, &size_));
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_SELF) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiComm> MpiComm::world() {
  MPI_Comm dup;
  Watchdog::get().watch_call("communicator creation", [&] { KL_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &dup)); });
  return std::make_unique<MpiComm>(dup);
}

std::unique_ptr<MpiComm> MpiComm::split(int color, int key) const {
  MPI_Comm part;
  Watchdog::get().watch_call("communicator creation", [&] { KL_CHECK_MPI(MPI_Comm_split(comm_, color, key, &part)); });
  return std::make_unique<MpiComm>(part);
}

Handle MpiComm::all_reduce_sum(std::span<float> buffer) {
  auto handle = std::make_unique<MpiRequest>("all-reduce", -1, buffer.size_bytes());
  KL_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, buffer.data(), count_of(buffer.size()), MPI_FLOAT, MPI_SUM,
                              comm_, handle->get()));
  return handle;
}

Handle MpiComm::reduce_scatter_sum(std::span<const float> in, std::span<float> out) {
  KL_CHECK(in.size() == out.size() * static_cast<size_t>(size_), "reduce_scatter: in must be size() x out");
  auto handle = std::make_unique<MpiRequest>("reduce-scatter", -1, in.size_bytes());
  KL_CHECK_MPI(MPI_Ireduce_scatter_block(in.data(), out.data(), count_of(out.size()), MPI_FLOAT, MPI_SUM,
                                         comm_, handle->get()));
  return handle;
}

Handle MpiComm::all_gather(std::span<const float> in, std::span<float> out) {
  KL_CHECK(out.size() == in.size() * static_cast<size_t>(size_), "all_gather: out must be size() x in");
  auto handle = std::make_unique<MpiRequest>("all-gather", -1, out.size_bytes());
  // A rank's own chunk may already sit in place inside `out` (ZeRO's parameter gather).
  const bool in_place = in.data() == out.data() + in.size() * static_cast<size_t>(rank_);
  KL_CHECK_MPI(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data(), count_of(in.size()), MPI_FLOAT,
                              out.data(), count_of(in.size()), MPI_FLOAT, comm_, handle->get()));
  return handle;
}

Handle MpiComm::broadcast(std::span<float> buffer, int root) {
  auto handle = std::make_unique<MpiRequest>("broadcast", root, buffer.size_bytes());
  KL_CHECK_MPI(MPI_Ibcast(buffer.data(), count_of(buffer.size()), MPI_FLOAT, root, comm_, handle->get()));
  return handle;
}

Handle MpiComm::isend(std::span<const float> buffer, int peer, int tag) {
  auto handle = std::make_unique<MpiRequest>("send", peer, buffer.size_bytes());
  KL_CHECK_MPI(MPI_Isend(buffer.data(), count_of(buffer.size()), MPI_FLOAT, peer, tag, comm_, handle->get()));
  return handle;
}

Handle MpiComm::irecv(std::span<float> buffer, int peer, int tag) {
  auto handle = std::make_unique<MpiRequest>("receive", peer, buffer.size_bytes());
  KL_CHECK_MPI(MPI_Irecv(buffer.data(), count_of(buffer.size()), MPI_FLOAT, peer, tag, comm_, handle->get()));
  return handle;
}

// The blocking calls are non-blocking ones waited on, so that the watchdog sees them too.
void MpiComm::barrier() {
  MpiRequest request("barrier", -1, 0);
  KL_CHECK_MPI(MPI_Ibarrier(comm_, request.get()));
  request.wait();
}

void MpiComm::all_reduce_sum(std::span<double> values) {
  MpiRequest request("all-reduce (scalars)", -1, values.size_bytes());
  KL_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_DOUBLE, MPI_SUM, comm_,
                              request.get()));
  request.wait();
}

void MpiComm::broadcast_bytes(std::span<std::byte> bytes, int root) {
  MpiRequest request("broadcast (bytes)", root, static_cast<int64_t>(bytes.size()));
  KL_CHECK_MPI(MPI_Ibcast(bytes.data(), count_of(bytes.size()), MPI_BYTE, root, comm_, request.get()));
  request.wait();
}

GridComms make_grid_comms(const Grid& grid) {
  GridComms comms{grid, {}, MpiComm::world(), nullptr, nullptr, nullptr};
  KL_CHECK(comms.world->size() == grid.size(), "the grid does not match the world size");
  comms.coord = grid.coord(comms.world->rank());
  // Every rank takes part in both splits. Keys keep the grid's order inside each group.
  comms.dp = comms.world->split(comms.coord.pp, comms.coord.dp);
  comms.pp = comms.world->split(comms.coord.dp, comms.coord.pp);
  const bool ends = comms.coord.pp == 0 || comms.coord.pp == grid.pp() - 1;
  comms.embedding = comms.pp->split(ends ? 0 : 1 + comms.coord.pp, comms.coord.pp);
  return comms;
}

}  // namespace kl
