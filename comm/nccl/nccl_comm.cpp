#include "comm/nccl/nccl_comm.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/device_setup.h"
#include "comm/watchdog.h"
#include "src/check/cuda.h"
#include "src/check/nccl.h"
#include "src/util/error.h"

namespace kl {

static_assert(sizeof(ncclUniqueId) == kNcclIdBytes, "NCCL's unique id changed size");

// What the handles share with their communicator, so that a handle may outlive it: the NCCL
// communicator (null once destroyed or aborted) and the pool of completion events, which reuses
// them instead of creating one per operation.
class NcclComm::Core {
 public:
  Core(int rank, int size) : rank_(rank), size_(size) {}
  ~Core() {
    for (cudaEvent_t event : free_) cudaEventDestroy(event);
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  cudaEvent_t take() {
    if (free_.empty()) {
      cudaEvent_t event = nullptr;
      KL_CHECK_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
      ++made_;
      return event;
    }
    const cudaEvent_t event = free_.back();
    free_.pop_back();
    return event;
  }
  void give(cudaEvent_t event) { free_.push_back(event); }
  int made() const { return made_; }

  ncclComm_t comm = nullptr;

  // Blocks until `event` has passed, polling it, NCCL's asynchronous error and the watchdog.
  void await(cudaEvent_t event) {
    Watchdog& watchdog = Watchdog::get();
    for (;;) {
      const cudaError_t status = cudaEventQuery(event);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) KL_CHECK_CUDA(status);
      check_async_error();
      if (watchdog.overdue()) watchdog.expire([this] { abort(); });
      std::this_thread::yield();
    }
  }

  // A peer that died or a network failure shows here, not as a failed call.
  void check_async_error() {
    KL_CHECK(comm != nullptr, "NcclComm: waiting on an operation of a communicator already destroyed");
    ncclResult_t async = ncclSuccess;
    KL_CHECK_NCCL(ncclCommGetAsyncError(comm, &async));
    if (async == ncclSuccess || async == ncclInProgress) return;
    const std::string detail = std::string(ncclGetErrorString(async)) + ": " + ncclGetLastError(comm);
    ncclCommAbort(comm);
    comm = nullptr;
    fatal(__FILE__, __LINE__, "ncclCommGetAsyncError",
          "NCCL failed on a pending operation (" + detail + "); the communicator is aborted");
  }

  // Stops the kernels stuck on a peer, so the process can end.
  void abort() {
    if (!comm) return;
    std::fprintf(stderr, "kilolayer: rank %d of %d: aborting the NCCL communicator\n", rank_, size_);
    std::fflush(stderr);
    ncclCommAbort(comm);
    comm = nullptr;
  }

 private:
  std::vector<cudaEvent_t> free_;
  int made_ = 0;
  int rank_, size_;  // in the communicator, for the abort line
};

// One completion event, shared by every operation of a group. Not `recorded` while the group is
// open: an unrecorded event reads as passed to cudaEventQuery, which would be a lie.
struct NcclComm::Completion {
  explicit Completion(std::shared_ptr<Core> core) : core(std::move(core)), event(this->core->take()) {}
  ~Completion() { core->give(event); }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  std::shared_ptr<Core> core;
  cudaEvent_t event;
  bool recorded = false;
  bool passed = false;
};

class NcclComm::Request final : public CommHandle {
 public:
  Request(std::shared_ptr<Completion> done, uint64_t seq) : done_(std::move(done)), seq_(seq) {}
  void wait() override {
    KL_CHECK(done_->recorded, "NcclComm: wait() on an operation of a group that is still open (it cannot complete)");
    if (!done_->passed) {
      Watchdog::Blocked blocked(seq_, Watchdog::kPolled);
      done_->core->await(done_->event);
      done_->passed = true;
    }
    Watchdog::get().completed(seq_);
  }
  bool test() override {
    if (!done_->recorded) return false;
    if (!done_->passed) {
      const cudaError_t status = cudaEventQuery(done_->event);
      if (status == cudaErrorNotReady) {
        done_->core->check_async_error();
        return false;
      }
      KL_CHECK_CUDA(status);
      done_->passed = true;
    }
    Watchdog::get().completed(seq_);
    return true;
  }
  ~Request() override {
    // As with MPI: a started operation must finish before its buffers go away; an abandoned handle
    // waits (an event is returned to the pool only once it has passed).
    if (done_->recorded && !done_->passed) wait();
    Watchdog::get().completed(seq_);
  }

 private:
  std::shared_ptr<Completion> done_;
  uint64_t seq_;
};

NcclComm::NcclComm(Comm& host, cudaStream_t compute)
    : host_(host),
      compute_(compute),
      rank_(host.rank()),
      size_(host.size()),
      core_(std::make_shared<Core>(host.rank(), host.size())) {
  KL_CHECK(host.memory() == Memory::kHost, "an NCCL communicator is bootstrapped over a host communicator");
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  KL_CHECK_CUDA(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  BootstrapSteps steps;
  steps.make_id = [] {
    ncclUniqueId id;
    KL_CHECK_NCCL(ncclGetUniqueId(&id));
    NcclId bytes{};
    std::memcpy(bytes.data(), id.internal, bytes.size());
    return bytes;
  };
  steps.broadcast_from_0 = [this](std::span<char> bytes) { host_.broadcast_bytes(std::as_writable_bytes(bytes), 0); };
  steps.join = [this](const NcclId& bytes) {
    ncclUniqueId id;
    std::memcpy(id.internal, bytes.data(), bytes.size());
    // Joining waits for every rank: a rank that never comes is the watchdog's to report.
    const uint64_t seq = Watchdog::get().started("NCCL init", -1, 0);
    {
      Watchdog::Blocked blocked(seq);
      KL_CHECK_NCCL(ncclCommInitRank(&core_->comm, size_, id, rank_));
    }
    Watchdog::get().completed(seq);
  };
  bootstrap(rank_, steps);
}

NcclComm::~NcclComm() {
  if (core_->comm) {
    cudaStreamSynchronize(stream_);  // every handle's event has passed: none touches the communicator
    ncclCommDestroy(core_->comm);
    core_->comm = nullptr;
  }
  if (ready_) cudaEventDestroy(ready_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::unique_ptr<NcclComm> make_nccl_comm(Comm& host_group, cudaStream_t compute) {
  return std::make_unique<NcclComm>(host_group, compute);
}

int NcclComm::events_made() const { return core_->made(); }

void NcclComm::require_device(const void* data, const char* what) const {
  if (!data) return;  // an empty span
  cudaPointerAttributes attributes{};
  KL_CHECK_CUDA(cudaPointerGetAttributes(&attributes, data));
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
    fatal(__FILE__, __LINE__, what,
          "a host buffer handed to an NCCL communicator, which moves device memory (Comm::memory() is kDevice)");
  }
}

uint64_t NcclComm::begin(const char* kind, int peer, size_t bytes) {
  const uint64_t seq = Watchdog::get().started(kind, peer, static_cast<int64_t>(bytes));
  if (group_depth_ == 0) {  // a group orders itself once, when it opens
    KL_CHECK_CUDA(cudaEventRecord(ready_, compute_));
    KL_CHECK_CUDA(cudaStreamWaitEvent(stream_, ready_, 0));
  } else {
    group_last_ = seq;
  }
  return seq;
}

Handle NcclComm::end(uint64_t seq) {
  if (group_depth_ > 0) {
    if (!group_done_) group_done_ = std::make_shared<Completion>(core_);
    return std::make_unique<Request>(group_done_, seq);
  }
  auto done = std::make_shared<Completion>(core_);
  KL_CHECK_CUDA(cudaEventRecord(done->event, stream_));
  done->recorded = true;
  return std::make_unique<Request>(std::move(done), seq);
}

NcclComm::Group::Group(NcclComm& comm) : comm_(comm) {
  if (comm_.group_depth_ == 0) {
    KL_CHECK_CUDA(cudaEventRecord(comm_.ready_, comm_.compute_));
    KL_CHECK_CUDA(cudaStreamWaitEvent(comm_.stream_, comm_.ready_, 0));
  }
  ++comm_.group_depth_;
  KL_CHECK_NCCL(ncclGroupStart());
}

NcclComm::Group::~Group() {
  if (comm_.group_depth_ > 1) {
    --comm_.group_depth_;
    KL_CHECK_NCCL(ncclGroupEnd());
    return;
  }
  {
    // The group's operations launch here (and a first send or receive connects to its peer).
    Watchdog::Blocked blocked(comm_.group_last_);
    KL_CHECK_NCCL(ncclGroupEnd());
  }
  comm_.group_depth_ = 0;
  comm_.group_last_ = 0;
  if (comm_.group_done_) {
    KL_CHECK_CUDA(cudaEventRecord(comm_.group_done_->event, comm_.stream_));
    comm_.group_done_->recorded = true;
    comm_.group_done_.reset();
  }
}

// Each call: its operation numbered and ordered after the compute stream (begin), launched while
// the watchdog looks on (outside a group, the launch itself may connect to a peer), its handle (end).

Handle NcclComm::all_reduce_sum(std::span<float> buffer) {
  require_device(buffer.data(), "NcclComm::all_reduce_sum");
  const uint64_t seq = begin("all-reduce", -1, buffer.size_bytes());
  {
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(ncclAllReduce(buffer.data(), buffer.data(), buffer.size(), ncclFloat32, ncclSum, core_->comm, stream_));
  }
  return end(seq);
}

Handle NcclComm::reduce_scatter_sum(std::span<const float> in, std::span<float> out) {
  const std::string problem = check_reduce_scatter(in.size(), out.size(), size_);
  if (!problem.empty()) fatal(__FILE__, __LINE__, "NcclComm::reduce_scatter_sum", problem);
  require_device(in.data(), "NcclComm::reduce_scatter_sum");
  require_device(out.data(), "NcclComm::reduce_scatter_sum");
  const uint64_t seq = begin("reduce-scatter", -1, in.size_bytes());
  {
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(ncclReduceScatter(in.data(), out.data(), out.size(), ncclFloat32, ncclSum, core_->comm, stream_));
  }
  return end(seq);
}

Handle NcclComm::all_gather(std::span<const float> in, std::span<float> out) {
  const std::string problem = check_all_gather(in.size(), out.size(), size_);
  if (!problem.empty()) fatal(__FILE__, __LINE__, "NcclComm::all_gather", problem);
  require_device(in.data(), "NcclComm::all_gather");
  require_device(out.data(), "NcclComm::all_gather");
  const uint64_t seq = begin("all-gather", -1, out.size_bytes());
  {
    // In place when `in` is this rank's chunk of `out` (NCCL's documented in-place form).
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(ncclAllGather(in.data(), out.data(), in.size(), ncclFloat32, core_->comm, stream_));
  }
  return end(seq);
}

Handle NcclComm::broadcast(std::span<float> buffer, int root) {
  const std::string problem = check_root(root, size_);
  if (!problem.empty()) fatal(__FILE__, __LINE__, "NcclComm::broadcast", problem);
  require_device(buffer.data(), "NcclComm::broadcast");
  const uint64_t seq = begin("broadcast", root, buffer.size_bytes());
  {
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(
        ncclBroadcast(buffer.data(), buffer.data(), buffer.size(), ncclFloat32, root, core_->comm, stream_));
  }
  return end(seq);
}

Handle NcclComm::isend(std::span<const float> buffer, int peer, int tag) {
  const std::string problem = check_peer(peer, rank_, size_);
  if (!problem.empty()) fatal(__FILE__, __LINE__, "NcclComm::isend", problem);
  KL_CHECK(tag >= 0, "NcclComm::isend: negative tag");
  require_device(buffer.data(), "NcclComm::isend");
  const uint64_t seq = begin("send", peer, buffer.size_bytes());
  {
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(ncclSend(buffer.data(), buffer.size(), ncclFloat32, peer, core_->comm, stream_));
  }
  return end(seq);
}

Handle NcclComm::irecv(std::span<float> buffer, int peer, int tag) {
  const std::string problem = check_peer(peer, rank_, size_);
  if (!problem.empty()) fatal(__FILE__, __LINE__, "NcclComm::irecv", problem);
  KL_CHECK(tag >= 0, "NcclComm::irecv: negative tag");
  require_device(buffer.data(), "NcclComm::irecv");
  const uint64_t seq = begin("receive", peer, buffer.size_bytes());
  {
    Watchdog::Blocked blocked(seq);
    KL_CHECK_NCCL(ncclRecv(buffer.data(), buffer.size(), ncclFloat32, peer, core_->comm, stream_));
  }
  return end(seq);
}

void NcclComm::barrier() {
  KL_CHECK(group_depth_ == 0, "NcclComm::barrier inside a group");
  const uint64_t seq = begin("barrier (device work)", -1, 0);
  Completion done(core_);
  KL_CHECK_CUDA(cudaEventRecord(done.event, stream_));
  {
    Watchdog::Blocked blocked(seq, Watchdog::kPolled);
    core_->await(done.event);
  }
  Watchdog::get().completed(seq);
  host_.barrier();
}

void NcclComm::all_reduce_sum(std::span<double> values) { host_.all_reduce_sum(values); }

void NcclComm::broadcast_bytes(std::span<std::byte> bytes, int root) { host_.broadcast_bytes(bytes, root); }

std::unique_ptr<CommGroup> NcclComm::fuse() {
  struct Fused final : CommGroup {
    explicit Fused(NcclComm& comm) : group(comm) {}
    Group group;
  };
  return std::make_unique<Fused>(*this);
}

}  // namespace kl
