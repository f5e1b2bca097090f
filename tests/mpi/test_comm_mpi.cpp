// The MPI communicator and the gradient reducer under a real mpirun (2 and 4 ranks): every
// operation against values each rank can compute on its own; NCCL's bootstrap over it (without
// NCCL); and a checkpoint written by every rank at once through the MPI communicator handed to it.
#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/device_setup.h"
#include "comm/grad_reducer.h"
#include "comm/mpi_comm.h"
#include "comm/shard_reducer.h"
#include "models/params.h"
#include "src/checkpoint/checkpoint.h"

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

TEST(MpiComm, BroadcastsBytesOnTheHost) {
  auto comm = MpiComm::world();
  EXPECT_EQ(comm->memory(), Memory::kHost);
  const int root = comm->size() - 1;
  std::vector<std::byte> bytes(300, std::byte{0});
  if (comm->rank() == root) {
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>((i * 7 + 1) & 0xFF);
  }
  comm->broadcast_bytes(bytes, root);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], static_cast<std::byte>((i * 7 + 1) & 0xFF)) << i;
}

// What NcclComm's constructor does, with the id made by a fake instead of NCCL: rank 0 alone makes
// it, broadcast_bytes carries it, every rank joins with rank 0's bytes.
TEST(MpiComm, BootstrapsAnNcclIdOverBroadcastBytes) {
  auto comm = MpiComm::world();
  int made = 0;
  NcclId joined{};
  BootstrapSteps steps;
  steps.make_id = [&] {
    ++made;
    NcclId id{};
    for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>(i + 3 * comm->rank() + 1);
    return id;
  };
  steps.broadcast_from_0 = [&](std::span<char> bytes) { comm->broadcast_bytes(std::as_writable_bytes(bytes), 0); };
  steps.join = [&](const NcclId& id) { joined = id; };
  bootstrap(comm->rank(), steps);
  EXPECT_EQ(made, comm->rank() == 0 ? 1 : 0);
  for (size_t i = 0; i < joined.size(); ++i) ASSERT_EQ(joined[i], static_cast<char>(i + 1)) << i;
}

// One fresh directory for all ranks: rank 0 makes it and broadcasts its name.
std::string shared_temp_dir(Comm& world) {
  std::vector<char> name(256, '\0');
  if (world.rank() == 0) {
    std::string dir = (std::filesystem::temp_directory_path() / "kl_mpi_checkpoint.XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    std::strncpy(name.data(), dir.c_str(), name.size() - 1);
  }
  world.broadcast_bytes(std::as_writable_bytes(std::span<char>(name)), 0);
  return name.data();
}

// The parameters and both moments of every tensor of `table` in the checkpoint `path`.
std::array<std::vector<float>, 3> read_whole(const std::string& path, const ParamTable& table) {
  std::array<std::vector<float>, 3> state;
  for (auto& part : state) part.resize(static_cast<size_t>(table.buffer_size()));
  checkpoint::RankState all;
  all.table = &table;
  all.params = state[0];
  all.exp_avg = state[1];
  all.exp_avg_sq = state[2];
  checkpoint::read_tensors(path, all);
  return state;
}

// Every rank holds one pipeline stage (a block; the embeddings on the first, the head on the last)
// and writes it into one file through parallel HDF5 on the communicator handed over explicitly;
// read back under the whole model's table, every tensor is the one its stage wrote.
TEST(Checkpoint, EveryRankWritesItsStageThroughTheMpiCommunicator) {
  auto world = MpiComm::world();
  const int rank = world->rank(), ranks = world->size();
  ModelConfig model;
  model.layers = ranks;
  model.d_model = 16;
  model.heads = 2;
  model.seq_len = 8;
  model.vocab = 32;
  model.tie_embeddings = false;  // no tied copy: each tensor has exactly one writer

  const std::string dir = shared_temp_dir(*world), path = dir + "/state.h5";

  const ParamTable stage(model, {rank}, rank == 0, rank == ranks - 1);
  std::vector<float> params(static_cast<size_t>(stage.buffer_size()));
  init_parameters(stage, 7, params.data());
  std::vector<float> m(params), v(params);
  for (size_t i = 0; i < params.size(); ++i) m[i] += 1.0f, v[i] *= v[i];
  checkpoint::RankState mine;
  mine.table = &stage;
  mine.params = params;
  mine.exp_avg = m;
  mine.exp_avg_sq = v;
  mine.writes = {{0, stage.buffer_size()}};
  checkpoint::Header header;
  header.step = 5;
  header.config = "[model]\nlayers = " + std::to_string(ranks) + "\n";
  header.layout = "dp=1 pp=" + std::to_string(ranks);
  const int64_t bytes = checkpoint::write_file(path, header, model, mine, *world);
  EXPECT_EQ(world->all_reduce_sum(double(bytes)), 3.0 * double(ParamTable(model).parameter_count()) * sizeof(float));

  if (rank == 0) {
    checkpoint::verify(path);  // sealed
    EXPECT_EQ(checkpoint::read_header(path).step, 5);
    // Read under the whole model's table: each tensor equals its stage's initial value (keyed by its
    // global name, whichever rank holds it) and the moments derived from it.
    const ParamTable whole(model);
    std::vector<float> expected(static_cast<size_t>(whole.buffer_size()));
    init_parameters(whole, 7, expected.data());
    const auto [p2, m2, v2] = read_whole(path, whole);
    for (const ParamSpec& spec : whole.specs()) {
      for (int64_t i = spec.offset; i < spec.offset + spec.numel(); ++i) {
        const float x = expected[static_cast<size_t>(i)];
        ASSERT_EQ(p2[static_cast<size_t>(i)], x) << spec.name;
        ASSERT_EQ(m2[static_cast<size_t>(i)], x + 1.0f) << spec.name;
        ASSERT_EQ(v2[static_cast<size_t>(i)], x * x) << spec.name;
      }
    }
    std::filesystem::remove_all(dir);
  }
  world->barrier();
}

// ZeRO-1's way: every rank holds the whole model's table but writes only its share of the flat
// buffer, its slice of every bucket (here: every ranks-th run of 1000 elements), so most tensors
// are split between ranks (each rank's part a hyperslab of the dataset). The tensors' CRC-32s, combined from the parts' (crc32_combine), and the seal's, combined
// from the parts' and the bytes between them, must equal zlib's over the whole bytes: read_tensors
// checks the first, verify() the second, each by reading the file through.
TEST(Checkpoint, ShardsSplitAcrossRanksCombineIntoTheWholeTensorsChecksums) {
  auto world = MpiComm::world();
  const int rank = world->rank(), ranks = world->size();
  ModelConfig model;
  model.layers = 3;
  model.d_model = 16;
  model.heads = 2;
  model.seq_len = 8;
  model.vocab = 40;
  const std::string dir = shared_temp_dir(*world), path = dir + "/state.h5";

  const ParamTable whole(model);
  const int64_t n = whole.buffer_size(), run = 1000;
  std::vector<float> expected(static_cast<size_t>(n));
  init_parameters(whole, 3, expected.data());
  // Only this rank's share, as under ZeRO-1: its runs, one after the other.
  checkpoint::RankState mine;
  std::vector<float> p;
  for (int64_t begin = run * rank; begin < n; begin += run * ranks) {
    mine.writes.push_back({begin, std::min(begin + run, n)});
    p.insert(p.end(), expected.begin() + begin, expected.begin() + mine.writes.back().end);
  }
  std::vector<float> m(p), v(p);
  for (size_t i = 0; i < p.size(); ++i) m[i] = 2.0f * p[i], v[i] = p[i] * p[i];
  mine.table = &whole;
  mine.params = p;
  mine.exp_avg = m;
  mine.exp_avg_sq = v;
  checkpoint::Header header;
  header.step = 9;
  header.config = "[model]\nlayers = 3\n";
  const int64_t bytes = checkpoint::write_file(path, header, model, mine, *world);
  EXPECT_EQ(bytes, 3 * static_cast<int64_t>(p.size()) * int64_t{sizeof(float)});

  if (rank == 0) {
    checkpoint::verify(path);  // the seal's CRC-32, combined, equals the file's
    const auto [p2, m2, v2] = read_whole(path, whole);  // each tensor's CRC-32, combined, equals its bytes'
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ(p2[i], expected[i]) << i;
      ASSERT_EQ(m2[i], 2.0f * expected[i]) << i;
      ASSERT_EQ(v2[i], expected[i] * expected[i]) << i;
    }
    std::filesystem::remove_all(dir);
  }
  world->barrier();
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

// ZeRO-1's buckets: every boundary a multiple of the ranks, each rank's pieces (its slice of every
// bucket) partition the buffer across ranks, the reduce-scatters leave in each piece the sum over
// ranks (as the all-reduce above), and the gathers, waited for bucket by bucket, make every
// rank's buffer whole again: each rank's own pieces, updated locally, arrive everywhere.
TEST(ShardReducer, PiecesPartitionTheBufferAndSumThenGather) {
  auto comm = MpiComm::world();
  const int ranks = comm->size();
  const auto n = static_cast<size_t>(10007 / ranks * ranks);
  std::vector<float> grads(n), params(n, -1.0f), shard(n / static_cast<size_t>(ranks));
  for (size_t i = 0; i < n; ++i) grads[i] = value(comm->rank(), i);
  ShardReducer reducer(*comm, grads, params, shard, 1000);
  int64_t owned = 0, bucket_end = 0;
  for (const BufferRange& piece : reducer.pieces()) {  // the rank-th of `ranks` slices of each bucket
    const int64_t bucket_begin = piece.begin - comm->rank() * piece.size();
    EXPECT_EQ(bucket_begin, bucket_end);
    EXPECT_EQ(bucket_begin % ranks, 0);
    bucket_end = bucket_begin + ranks * piece.size();
    owned += piece.size();
  }
  EXPECT_EQ(bucket_end, static_cast<int64_t>(n));
  EXPECT_GT(reducer.buckets(), 5);
  EXPECT_EQ(owned, static_cast<int64_t>(shard.size()));
  std::vector<double> owners(n, 0.0);  // how many ranks own each element
  for (const BufferRange& piece : reducer.pieces()) {
    for (int64_t i = piece.begin; i < piece.end; ++i) owners[static_cast<size_t>(i)] = 1.0;
  }
  comm->all_reduce_sum(owners);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(owners[i], 1.0) << i;

  reducer.begin();
  for (int64_t offset = 9000; offset > 0; offset -= 1500) reducer.ready_from(offset);
  reducer.finish();
  size_t local = 0;
  for (const BufferRange& piece : reducer.pieces()) {
    for (int64_t i = piece.begin; i < piece.end; ++i, ++local) {
      ASSERT_EQ(shard[local], sum_over_ranks(ranks, static_cast<size_t>(i))) << i;
      params[static_cast<size_t>(i)] = static_cast<float>(i);  // this rank's "update"
    }
  }
  reducer.start_gather();
  for (int64_t end = 1; end <= static_cast<int64_t>(n); end += 777) reducer.need_params(end);
  reducer.need_params(static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(params[i], static_cast<float>(i)) << i;
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
