#include "comm/nccl/nccl_comm.h"

#include <mpi.h>

#include <cstring>
#include <string>

#include "comm/device_setup.h"
#include "src/kernels/cuda/check.h"
#include "src/util/error.h"

#define KL_CHECK_NCCL(call)                                                                          \
  do {                                                                                               \
    const ncclResult_t kl_nccl_status = (call);                                                      \
    if (kl_nccl_status != ncclSuccess) {                                                             \
      ::kl::fatal(__FILE__, __LINE__, #call, std::string("NCCL error: ") + ncclGetErrorString(kl_nccl_status)); \
    }                                                                                                \
  } while (0)

namespace kl {

static_assert(sizeof(ncclUniqueId) == kNcclIdBytes, "NCCL's unique id changed size");

struct NcclComm::Event {
  cudaEvent_t event = nullptr;
  Event() { KL_CHECK_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(event); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

class NcclComm::Request final : public CommHandle {
 public:
  Request(std::shared_ptr<Event> done, cudaStream_t compute) : done_(std::move(done)), compute_(compute) {}
  void wait() override { KL_CHECK_CUDA(cudaStreamWaitEvent(compute_, done_->event, 0)); }
  bool test() override {
    const cudaError_t status = cudaEventQuery(done_->event);
    if (status == cudaErrorNotReady) return false;
    KL_CHECK_CUDA(status);
    return true;
  }

 private:
  std::shared_ptr<Event> done_;
  cudaStream_t compute_;
};

namespace {

void check(const std::string& problem, const char* what) {
  if (!problem.empty()) fatal(__FILE__, __LINE__, what, problem);
}

}  // namespace

NcclComm::NcclComm(MpiComm& mpi, cudaStream_t compute)
    : mpi_(mpi), compute_(compute), rank_(mpi.rank()), size_(mpi.size()) {
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  BootstrapSteps steps;
  steps.make_id = [] {
    ncclUniqueId id;
    KL_CHECK_NCCL(ncclGetUniqueId(&id));
    NcclId bytes{};
    std::memcpy(bytes.data(), id.internal, bytes.size());
    return bytes;
  };
  steps.broadcast_from_0 = [this](std::span<char> bytes) {
    const int status = MPI_Bcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, 0, mpi_.native());
    KL_CHECK(status == MPI_SUCCESS, "MPI_Bcast of NCCL's unique id failed");
  };
  steps.join = [this](const NcclId& bytes) {
    ncclUniqueId id;
    std::memcpy(id.internal, bytes.data(), bytes.size());
    KL_CHECK_NCCL(ncclCommInitRank(&comm_, size_, id, rank_));
  };
  bootstrap(rank_, steps);
}

NcclComm::~NcclComm() {
  if (comm_) {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclComm::before_operation() {
  if (group_depth_ > 0) return;  // the group waited once when it opened
  Event ready;
  KL_CHECK_CUDA(cudaEventRecord(ready.event, compute_));
  KL_CHECK_CUDA(cudaStreamWaitEvent(stream_, ready.event, 0));
}

Handle NcclComm::after_operation() {
  if (group_depth_ > 0) {
    if (group_events_.empty()) group_events_.push_back(std::make_shared<Event>());
    return std::make_unique<Request>(group_events_.back(), compute_);
  }
  auto done = std::make_shared<Event>();
  KL_CHECK_CUDA(cudaEventRecord(done->event, stream_));
  return std::make_unique<Request>(std::move(done), compute_);
}

NcclComm::Group::Group(NcclComm& comm) : comm_(comm) {
  comm_.before_operation();
  ++comm_.group_depth_;
  KL_CHECK_NCCL(ncclGroupStart());
}

NcclComm::Group::~Group() {
  KL_CHECK_NCCL(ncclGroupEnd());
  if (--comm_.group_depth_ == 0) {
    // The handles given out inside the group share one event, recorded now that all is launched.
    for (const auto& done : comm_.group_events_) KL_CHECK_CUDA(cudaEventRecord(done->event, comm_.stream_));
    comm_.group_events_.clear();
  }
}

Handle NcclComm::all_reduce_sum(std::span<float> buffer) {
  before_operation();
  KL_CHECK_NCCL(ncclAllReduce(buffer.data(), buffer.data(), buffer.size(), ncclFloat32, ncclSum, comm_, stream_));
  return after_operation();
}

Handle NcclComm::reduce_scatter_sum(std::span<const float> in, std::span<float> out) {
  check(check_reduce_scatter(in.size(), out.size(), size_), "NcclComm::reduce_scatter_sum");
  before_operation();
  KL_CHECK_NCCL(ncclReduceScatter(in.data(), out.data(), out.size(), ncclFloat32, ncclSum, comm_, stream_));
  return after_operation();
}

Handle NcclComm::all_gather(std::span<const float> in, std::span<float> out) {
  check(check_all_gather(in.size(), out.size(), size_), "NcclComm::all_gather");
  before_operation();
  // In place when `in` is this rank's chunk of `out` (NCCL's documented in-place form).
  KL_CHECK_NCCL(ncclAllGather(in.data(), out.data(), in.size(), ncclFloat32, comm_, stream_));
  return after_operation();
}

Handle NcclComm::broadcast(std::span<float> buffer, int root) {
  check(check_root(root, size_), "NcclComm::broadcast");
  before_operation();
  KL_CHECK_NCCL(ncclBroadcast(buffer.data(), buffer.data(), buffer.size(), ncclFloat32, root, comm_, stream_));
  return after_operation();
}

Handle NcclComm::isend(std::span<const float> buffer, int peer, int tag) {
  check(check_peer(peer, rank_, size_), "NcclComm::isend");
  KL_CHECK(tag >= 0, "NcclComm::isend: negative tag");
  before_operation();
  KL_CHECK_NCCL(ncclSend(buffer.data(), buffer.size(), ncclFloat32, peer, comm_, stream_));
  return after_operation();
}

Handle NcclComm::irecv(std::span<float> buffer, int peer, int tag) {
  check(check_peer(peer, rank_, size_), "NcclComm::irecv");
  KL_CHECK(tag >= 0, "NcclComm::irecv: negative tag");
  before_operation();
  KL_CHECK_NCCL(ncclRecv(buffer.data(), buffer.size(), ncclFloat32, peer, comm_, stream_));
  return after_operation();
}

void NcclComm::barrier() {
  KL_CHECK_CUDA(cudaStreamSynchronize(compute_));
  KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  mpi_.barrier();
}

void NcclComm::all_reduce_sum(std::span<double> values) { mpi_.all_reduce_sum(values); }

}  // namespace kl
