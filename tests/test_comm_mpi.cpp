// The MPI communicator and the gradient reducer under a real mpirun (2 and 4 ranks): every
// operation against values each rank can compute on its own.
#include <gtest/gtest.h>
#include <mpi.h>

#include <numeric>
#include <vector>

#include "comm/grad_reducer.h"
#include "comm/mpi_comm.h"

namespace kl {
namespace {

// Rank r's value at index i: distinct across ranks and indices, exact in float.
float value(int rank, size_t i) { return static_cast<float>(rank * 1000 + static_cast<int>(i % 997)); }

float sum_over_ranks(int size, size_t i) {
  float s = 0;
  for (int r = 0; r < size; ++r) s += value(r, i);
  return s;
}

TEST(MpiComm, AllReduceSum) {
  auto comm = MpiComm::world();
  std::vector<float> buffer(10000);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = value(comm->rank(), i);
  auto handle = comm->all_reduce_sum(buffer);
  while (!handle->test()) {
  }
  handle->wait();  // a second completion call is harmless
  for (size_t i = 0; i < buffer.size(); ++i) ASSERT_EQ(buffer[i], sum_over_ranks(comm->size(), i));
  EXPECT_DOUBLE_EQ(comm->all_reduce_sum(0.5 * (comm->rank() + 1)),
                   0.25 * comm->size() * (comm->size() + 1));
}

TEST(MpiComm, ReduceScatterAndAllGather) {
  auto comm = MpiComm::world();
  const size_t chunk = 333;
  std::vector<float> in(chunk * static_cast<size_t>(comm->size())), out(chunk);
  for (size_t i = 0; i < in.size(); ++i) in[i] = value(comm->rank(), i);
  comm->reduce_scatter_sum(in, out)->wait();
  for (size_t i = 0; i < chunk; ++i) {
    ASSERT_EQ(out[i], sum_over_ranks(comm->size(), chunk * static_cast<size_t>(comm->rank()) + i));
  }
  std::vector<float> gathered(in.size());
  comm->all_gather(out, gathered)->wait();
  for (size_t i = 0; i < gathered.size(); ++i) ASSERT_EQ(gathered[i], sum_over_ranks(comm->size(), i));
  // In place: this rank's chunk already sits inside the output.
  std::vector<float> inplace(in.size(), -1.0f);
  std::span<float> mine(inplace.data() + chunk * static_cast<size_t>(comm->rank()), chunk);
  for (size_t i = 0; i < chunk; ++i) mine[i] = static_cast<float>(comm->rank());
  comm->all_gather(mine, inplace)->wait();
  for (size_t i = 0; i < inplace.size(); ++i) ASSERT_EQ(inplace[i], static_cast<float>(i / chunk));
}

TEST(MpiComm, BroadcastSendReceiveBarrier) {
  auto comm = MpiComm::world();
  std::vector<float> buffer(100, static_cast<float>(comm->rank()));
  const int root = comm->size() - 1;
  comm->broadcast(buffer, root)->wait();
  for (float x : buffer) ASSERT_EQ(x, static_cast<float>(root));
  // A ring: send to the right, receive from the left, both posted before either waits.
  const int right = (comm->rank() + 1) % comm->size(), left = (comm->rank() + comm->size() - 1) % comm->size();
  std::vector<float> out(50, static_cast<float>(comm->rank())), in(50, -1.0f);
  auto recv = comm->irecv(in, left, 7);
  auto send = comm->isend(out, right, 7);
  recv->wait();
  send->wait();
  for (float x : in) ASSERT_EQ(x, static_cast<float>(left));
  comm->barrier();
}

TEST(MpiComm, GroupsFollowTheGrid) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world % 2 != 0) GTEST_SKIP() << "needs an even world";
  const Grid grid(world / 2, 2);
  const GridComms comms = make_grid_comms(grid);
  EXPECT_EQ(comms.dp->size(), world / 2);
  EXPECT_EQ(comms.pp->size(), 2);
  EXPECT_EQ(comms.dp->rank(), comms.coord.dp);
  EXPECT_EQ(comms.pp->rank(), comms.coord.pp);
  // Summing world ranks inside the dp group gives the grid's group members.
  const auto members = grid.dp_group(comms.coord.pp);
  EXPECT_DOUBLE_EQ(comms.dp->all_reduce_sum(double(comms.world->rank())),
                   std::accumulate(members.begin(), members.end(), 0.0));
}

TEST(GradReducer, BucketsCoverTheBufferAndSum) {
  auto comm = MpiComm::world();
  std::vector<float> grads(10007);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = value(comm->rank(), i);
  GradReducer reducer(*comm, grads, 1000);
  EXPECT_EQ(reducer.buckets(), 11);  // [0, 250), [250, 1250), ..., [9250, 10007)
  reducer.begin();
  // Announce progress the way the backward pass does, from the end towards the start.
  for (int64_t offset = 9000; offset > 0; offset -= 1500) reducer.ready_from(offset);
  reducer.finish();
  for (size_t i = 0; i < grads.size(); ++i) ASSERT_EQ(grads[i], sum_over_ranks(comm->size(), i)) << i;
  // A second step on the same reducer.
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = 1.0f;
  reducer.begin();
  reducer.finish();
  for (float g : grads) ASSERT_EQ(g, static_cast<float>(comm->size()));
}

}  // namespace
}  // namespace kl

// MPI around GoogleTest; only rank 0 prints, every rank's failures set the exit status.
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0, any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed;
}
