// The NCCL communicator on real GPUs (label gpu): every collective and a paired send/receive on
// device buffers against the sums and copies computed on the host, then what NcclComm promises
// beyond the arithmetic: wait() blocks the host until the result is in place, test() says false
// inside a group still open, completion events are reused, host buffers are refused, and a wait
// stuck past parallel.timeout_s prints the watchdog's report, aborts the communicator and exits 4.
// Also a one-rank SoloComm on device memory.
//
// Under mpirun (1 or more ranks, one GPU each) in a build with MPI; as one plain process, a
// one-rank NcclComm bootstrapped over a SoloComm, in a build without. The two fault cases run in a
// child process (this binary with --stuck or --host-buffer, no MPI), because each ends its process.
// Without a usable GPU it prints "SKIPPED: no CUDA device: ..." and exits 77, which CTest reports
// as skipped. Exit 1 on any mismatch, naming the check and the rank.
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/device_setup.h"
#include "comm/nccl/nccl_comm.h"
#include "comm/solo_comm.h"
#include "comm/watchdog.h"
#include "src/check/cuda.h"

#ifdef KL_HAVE_MPI
#include <mpi.h>

#include "comm/mpi_comm.h"
#endif

extern char** environ;

namespace {

int failures = 0;

void expect(bool ok, int rank, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
  ++failures;
}

void expect_equal(const char* what, int rank, const std::vector<float>& got, const std::vector<float>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      expect(false, rank, std::string(what) + ": element " + std::to_string(i) + " is " + std::to_string(got[i]) +
                              ", expected " + std::to_string(want[i]));
      return;
    }
  }
}

// Values of rank r: small integers, so every sum is exact in float whatever the reduction order.
std::vector<float> values_of(int r, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float((r + 1) * 1000 + int(i % 97));
  return v;
}

// An array in device memory (the trainer's buffers live in src/cuda; this test needs only these).
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { KL_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(float))); }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  std::span<float> all() { return {data_, n_}; }
  std::span<float> part(size_t begin, size_t n) { return {data_ + begin, n}; }
  // Ordered on `stream` and finished on return.
  void upload(const std::vector<float>& host, cudaStream_t stream) {
    KL_CHECK_CUDA(cudaMemcpyAsync(data_, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    KL_CHECK_CUDA(cudaStreamSynchronize(stream));
  }
  std::vector<float> download(size_t n, cudaStream_t stream) const {
    std::vector<float> host(n);
    KL_CHECK_CUDA(cudaMemcpyAsync(host.data(), data_, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    KL_CHECK_CUDA(cudaStreamSynchronize(stream));
    return host;
  }

 private:
  float* data_ = nullptr;
  size_t n_;
};

// Empty when this process sees a GPU, else what CUDA said.
std::string gpu_missing() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  return count == 0 ? "cudaGetDeviceCount found 0 devices" : "";
}

// This rank's GPU, as the trainer chooses it (comm/device_setup.h).
void select_gpu() {
  int count = 0;
  KL_CHECK_CUDA(cudaGetDeviceCount(&count));
  const int local_rank = kl::local_rank_from_env([](const char* name) { return std::getenv(name); }).value_or(0);
  KL_CHECK_CUDA(cudaSetDevice(kl::choose_device(local_rank, count)));
}

// A host callback that holds its stream for `ms` milliseconds: device work queued behind it waits.
void CUDART_CB hold_stream(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void collectives(kl::NcclComm& nccl, cudaStream_t compute) {
  const int p = nccl.size(), r = nccl.rank();
  const size_t n = 1000 * size_t(p), slice = n / size_t(p);
  DeviceArray a(n), b(n);

  a.upload(values_of(r, n), compute);
  nccl.all_reduce_sum(a.all())->wait();
  std::vector<float> sum(n, 0.0f);
  for (int q = 0; q < p; ++q) {
    const auto v = values_of(q, n);
    for (size_t i = 0; i < n; ++i) sum[i] += v[i];
  }
  expect_equal("all_reduce_sum", r, a.download(n, compute), sum);

  // reduce-scatter: this rank's n / p slice of the sum
  a.upload(values_of(r, n), compute);
  nccl.reduce_scatter_sum(a.all(), b.part(0, slice))->wait();
  expect_equal("reduce_scatter_sum", r, b.download(slice, compute),
               std::vector<float>(sum.begin() + long(slice) * r, sum.begin() + long(slice) * (r + 1)));

  // all-gather: every rank's slice, in rank order; then in place, from this rank's chunk of `out`
  std::vector<float> gathered;
  for (int q = 0; q < p; ++q) {
    const auto v = values_of(q, slice);
    gathered.insert(gathered.end(), v.begin(), v.end());
  }
  a.upload(values_of(r, slice), compute);
  nccl.all_gather(a.part(0, slice), b.all())->wait();
  expect_equal("all_gather", r, b.download(n, compute), gathered);
  std::vector<float> mine(n, -1.0f);
  std::copy_n(values_of(r, slice).begin(), slice, mine.begin() + long(slice) * r);
  a.upload(mine, compute);
  nccl.all_gather(a.part(slice * size_t(r), slice), a.all())->wait();
  expect_equal("all_gather in place", r, a.download(n, compute), gathered);

  a.upload(values_of(r, n), compute);
  nccl.broadcast(a.all(), p - 1)->wait();
  expect_equal("broadcast", r, a.download(n, compute), values_of(p - 1, n));

  // A ring of paired send/receive, inside one group (see nccl_comm.h on why).
  if (p > 1) {
    const int next = (r + 1) % p, previous = (r + p - 1) % p;
    a.upload(values_of(r, n), compute);
    std::vector<kl::Handle> handles;
    {
      auto group = nccl.group();
      handles.push_back(nccl.isend(a.all(), next, 0));
      handles.push_back(nccl.irecv(b.all(), previous, 0));
    }
    for (auto& h : handles) h->wait();
    expect_equal("isend/irecv ring", r, b.download(n, compute), values_of(previous, n));
  }
}

// What NcclComm adds over the arithmetic.
void promises(kl::NcclComm& nccl, cudaStream_t compute) {
  const int p = nccl.size(), r = nccl.rank();
  const size_t slice = 1000, n = slice * size_t(p);
  DeviceArray a(n), b(n);
  cudaStream_t probe = nullptr;  // ordered with nothing: sees only what has finished
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&probe, cudaStreamNonBlocking));

  // wait() returns only once the result is there, even when the operation had to wait 300 ms for
  // the compute stream (before, it only made the compute stream wait and returned at once).
  a.upload(values_of(r, slice), compute);
  b.upload(std::vector<float>(n, 0.0f), compute);
  int hold_ms = 300;
  const auto start = std::chrono::steady_clock::now();
  KL_CHECK_CUDA(cudaLaunchHostFunc(compute, hold_stream, &hold_ms));
  auto gather = nccl.all_gather(a.part(0, slice), b.all());
  gather->wait();
  const double waited = seconds_since(start);
  expect(waited >= 0.25, r, "wait() returned after " + std::to_string(waited) + " s, before the operation ran");
  expect(gather->test(), r, "test() is false right after wait()");
  std::vector<float> gathered;
  for (int q = 0; q < p; ++q) {
    const auto v = values_of(q, slice);
    gathered.insert(gathered.end(), v.begin(), v.end());
  }
  expect_equal("all_gather read after wait() on an unrelated stream", r, b.download(n, probe), gathered);

  // Inside an open group nothing has been launched: test() must not claim completion.
  std::vector<kl::Handle> handles;
  {
    auto group = nccl.group();
    handles.push_back(nccl.all_reduce_sum(a.part(0, slice)));
    handles.push_back(nccl.all_reduce_sum(b.part(0, slice)));
    expect(!handles[0]->test() && !handles[1]->test(), r, "test() is true for an operation of a group still open");
  }
  for (auto& h : handles) h->wait();
  expect(handles[0]->test() && handles[1]->test(), r, "test() is false after the group's wait()");

  // Completion events come from a pool: a hundred operations in a row reuse one.
  const int made = nccl.events_made();
  for (int i = 0; i < 100; ++i) nccl.all_reduce_sum(a.part(0, slice))->wait();
  expect(nccl.events_made() <= made + 1, r,
         "100 operations made " + std::to_string(nccl.events_made() - made) + " completion events");

  // Host values and bytes travel over the host communicator.
  double sums[2] = {1.0, double(r)};
  nccl.all_reduce_sum(std::span<double>(sums, 2));
  expect(sums[0] == p && sums[1] == p * (p - 1) / 2.0, r, "all_reduce_sum(double) over the host communicator");
  std::array<std::byte, 5> bytes{};
  if (r == 0) bytes = {std::byte{'n'}, std::byte{'c'}, std::byte{'c'}, std::byte{'l'}, std::byte{'!'}};
  nccl.broadcast_bytes(bytes, 0);
  expect(std::memcmp(bytes.data(), "nccl!", 5) == 0, r, "broadcast_bytes over the host communicator");
  nccl.barrier();
  KL_CHECK_CUDA(cudaStreamDestroy(probe));
}

// A one-rank group on device memory copies in to out.
void solo_on_device(int rank, cudaStream_t compute) {
  kl::SoloComm solo(kl::Memory::kDevice);
  const size_t n = 777;
  DeviceArray a(n), b(n);
  a.upload(values_of(rank, n), compute);
  b.upload(std::vector<float>(n, 0.0f), compute);
  solo.all_gather(a.all(), b.all())->wait();
  expect_equal("SoloComm(kDevice).all_gather", rank, b.download(n, compute), values_of(rank, n));
  a.upload(values_of(rank + 1, n), compute);
  solo.reduce_scatter_sum(a.all(), b.all())->wait();
  expect_equal("SoloComm(kDevice).reduce_scatter_sum", rank, b.download(n, compute), values_of(rank + 1, n));
}

// --- the fault cases, each in a process of its own ---

// An all-reduce that cannot start (its compute stream is held for 20 s) waited on with a 1 s
// deadline: the watchdog's report, the abort, exit 4.
int stuck_child() {
  select_gpu();
  kl::SoloComm host;
  cudaStream_t compute = nullptr;
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  kl::NcclComm nccl(host, compute);
  DeviceArray a(1024);
  kl::Watchdog::get().arm(1.0, 0);
  int hold_ms = 20000;
  KL_CHECK_CUDA(cudaLaunchHostFunc(compute, hold_stream, &hold_ms));
  nccl.all_reduce_sum(a.all())->wait();
  std::fprintf(stderr, "wait() returned from a stuck operation\n");
  return 0;
}

// A host buffer handed to NCCL: refused with a message, exit 3 (kl::fatal).
int host_buffer_child() {
  select_gpu();
  kl::SoloComm host;
  cudaStream_t compute = nullptr;
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  kl::NcclComm nccl(host, compute);
  std::vector<float> on_host(1024, 1.0f);
  nccl.all_reduce_sum(on_host)->wait();
  std::fprintf(stderr, "a host buffer was accepted\n");
  return 0;
}

// Runs this binary with `mode`; its exit status (-1: killed after 60 s) and its output.
std::pair<int, std::string> run_child(const char* mode) {
  char log[] = "/tmp/kl_nccl_child.XXXXXX";
  const int fd = ::mkstemp(log);
  KL_CHECK(fd >= 0, "cannot make a temporary file");
  ::close(fd);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log, O_WRONLY | O_TRUNC, 0);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, const_cast<char*>(mode), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, self, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  KL_CHECK(spawned == 0, std::string("cannot start the child: ") + std::strerror(spawned));
  int status = 0, code = -1;
  const auto start = std::chrono::steady_clock::now();
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (seconds_since(start) > 60) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(log);
  return {code, text};
}

void faults(int rank) {
  const auto [stuck_status, stuck_log] = run_child("--stuck");
  const bool reported = stuck_log.find("communication stuck for") != std::string::npos &&
                        stuck_log.find("waiting for #") != std::string::npos &&
                        stuck_log.find(" all-reduce, 4096 bytes") != std::string::npos;
  const bool aborted = stuck_log.find("aborting the NCCL communicator") != std::string::npos;
  expect(stuck_status == kl::kExitCommTimeout && reported && aborted, rank,
         "a stuck wait: exit " + std::to_string(stuck_status) + " (expected 4 with the report and the abort):\n" +
             stuck_log);
  const auto [host_status, host_log] = run_child("--host-buffer");
  expect(host_status == kl::kExitInternalError && host_log.find("host buffer") != std::string::npos, rank,
         "a host buffer: exit " + std::to_string(host_status) + " (expected 3, naming it):\n" + host_log);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--stuck") == 0) return stuck_child();
  if (argc > 1 && std::strcmp(argv[1], "--host-buffer") == 0) return host_buffer_child();
#ifdef KL_HAVE_MPI
  MPI_Init(&argc, &argv);
  std::unique_ptr<kl::Comm> host = kl::MpiComm::world();
#else
  std::unique_ptr<kl::Comm> host = std::make_unique<kl::SoloComm>();
#endif
  int status = 0;
  const std::string missing = gpu_missing();
  if (host->all_reduce_sum(missing.empty() ? 0.0 : 1.0) > 0) {
    if (host->rank() == 0) std::printf("SKIPPED: no CUDA device: %s\n", missing.empty() ? "on another rank" : missing.c_str());
    status = 77;
  } else {
    select_gpu();
    cudaStream_t compute = nullptr;
    KL_CHECK_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    {
      const auto nccl = kl::make_nccl_comm(*host, compute);
      collectives(*nccl, compute);
      promises(*nccl, compute);
    }
    solo_on_device(host->rank(), compute);
    KL_CHECK_CUDA(cudaStreamDestroy(compute));
    if (host->rank() == 0) faults(host->rank());
    const double total = host->all_reduce_sum(double(failures));
    if (host->rank() == 0) {
      std::printf("%s: %g failure(s) over %d rank(s)\n", total > 0 ? "FAIL" : "PASS", total, host->size());
    }
    status = total > 0 ? 1 : 0;
  }
  host.reset();
#ifdef KL_HAVE_MPI
  MPI_Finalize();
#endif
  return status;
}
