// The NCCL communicator under a real mpirun (label gpu): every collective and a paired send/receive
// on device buffers against the sums and copies computed on the host. Run with 1 or more ranks, one
// GPU each. Without a usable GPU it prints "SKIPPED: no CUDA device: ..." and exits 77, which CTest
// reports as skipped. Exit 1 on any mismatch, naming the operation and the element.
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "comm/mpi_comm.h"
#include "comm/nccl/nccl_comm.h"
#include "src/cuda/device.h"

namespace {

int failures = 0;

void expect_equal(const char* what, int rank, const std::vector<float>& got, const std::vector<float>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      std::fprintf(stderr, "rank %d: %s: element %zu is %g, expected %g\n", rank, what, i, got[i], want[i]);
      ++failures;
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

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  {
    std::string why;
    const bool have = kl::cuda::device_available(&why);
    int all_have = have ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all_have, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    auto world = kl::MpiComm::world();
    if (!all_have) {
      if (world->rank() == 0) std::printf("SKIPPED: no CUDA device: %s\n", have ? "on another rank" : why.c_str());
      status = 77;
    } else {
      kl::cuda::select_device();
      cudaStream_t compute = nullptr;
      KL_CHECK_CUDA(cudaStreamCreate(&compute));
      {
        kl::NcclComm nccl(*world, compute);
        const int p = nccl.size(), r = nccl.rank();
        const size_t n = 1000 * size_t(p);
        kl::cuda::DeviceBuffer<float> a{static_cast<int64_t>(n)}, b{static_cast<int64_t>(n)};
        std::vector<float> host(n), want(n, 0.0f);

        // all-reduce
        a.upload(values_of(r, n), compute);
        nccl.all_reduce_sum(std::span<float>(a.data(), n))->wait();
        a.download(host, compute);
        KL_CHECK_CUDA(cudaStreamSynchronize(compute));
        for (int q = 0; q < p; ++q) {
          const auto v = values_of(q, n);
          for (size_t i = 0; i < n; ++i) want[i] += v[i];
        }
        expect_equal("all_reduce_sum", r, host, want);

        // reduce-scatter: this rank's n / p slice of the sum
        const size_t slice = n / size_t(p);
        a.upload(values_of(r, n), compute);
        nccl.reduce_scatter_sum(std::span<const float>(a.data(), n), std::span<float>(b.data(), slice))->wait();
        std::vector<float> part(slice);
        b.download(part, compute);
        KL_CHECK_CUDA(cudaStreamSynchronize(compute));
        expect_equal("reduce_scatter_sum", r, part,
                     std::vector<float>(want.begin() + long(slice) * r, want.begin() + long(slice) * (r + 1)));

        // all-gather: every rank's slice, in rank order
        std::vector<float> mine = values_of(r, slice), gathered(n), expected;
        a.upload(mine, compute);
        nccl.all_gather(std::span<const float>(a.data(), slice), std::span<float>(b.data(), n))->wait();
        b.download(gathered, compute);
        KL_CHECK_CUDA(cudaStreamSynchronize(compute));
        for (int q = 0; q < p; ++q) {
          const auto v = values_of(q, slice);
          expected.insert(expected.end(), v.begin(), v.end());
        }
        expect_equal("all_gather", r, gathered, expected);

        // broadcast from the last rank
        a.upload(values_of(r, n), compute);
        nccl.broadcast(std::span<float>(a.data(), n), p - 1)->wait();
        a.download(host, compute);
        KL_CHECK_CUDA(cudaStreamSynchronize(compute));
        expect_equal("broadcast", r, host, values_of(p - 1, n));

        // a ring of paired send/receive inside one group
        if (p > 1) {
          const int next = (r + 1) % p, previous = (r + p - 1) % p;
          a.upload(values_of(r, n), compute);
          std::vector<kl::Handle> handles;
          {
            auto group = nccl.group();
            handles.push_back(nccl.isend(std::span<const float>(a.data(), n), next, 0));
            handles.push_back(nccl.irecv(std::span<float>(b.data(), n), previous, 0));
          }
          for (auto& h : handles) h->wait();
          b.download(host, compute);
          KL_CHECK_CUDA(cudaStreamSynchronize(compute));
          expect_equal("isend/irecv ring", r, host, values_of(previous, n));
        }

        // host scalars travel over MPI
        double sums[2] = {1.0, double(r)};
        nccl.all_reduce_sum(std::span<double>(sums, 2));
        if (sums[0] != p || sums[1] != p * (p - 1) / 2.0) {
          std::fprintf(stderr, "rank %d: all_reduce_sum(double): %g %g\n", r, sums[0], sums[1]);
          ++failures;
        }
        nccl.barrier();
      }
      KL_CHECK_CUDA(cudaStreamDestroy(compute));
      int total = failures;
      MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
      if (world->rank() == 0) std::printf("%s: %d mismatch(es) over %d rank(s)\n", total ? "FAIL" : "PASS", total, world->size());
      status = total ? 1 : 0;
    }
  }
  MPI_Finalize();
  return status;
}
