// Comm over MPI on host memory: non-blocking collectives (MPI_Iallreduce, MPI_Ireduce_scatter_block,
// MPI_Iallgather, MPI_Ibcast) and MPI_Isend/MPI_Irecv, on a communicator of its own. The only
// file pair in comm/ that includes mpi.h: a build without MPI (CMake's KL_MPI=OFF) leaves it out.
#pragma once

#include <mpi.h>

#include <memory>

#include "comm/comm.h"
#include "comm/grid.h"

namespace kl {

class MpiComm final : public Comm {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD or MPI_COMM_SELF).
  explicit MpiComm(MPI_Comm comm);
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  static std::unique_ptr<MpiComm> world();  // a duplicate of MPI_COMM_WORLD

  // Collective over this communicator: every rank takes part; ranks with the same color form one
  // new communicator, ordered by key.
  std::unique_ptr<MpiComm> split(int color, int key) const;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Memory memory() const override { return Memory::kHost; }
  Handle all_reduce_sum(std::span<float> buffer) override;
  Handle reduce_scatter_sum(std::span<const float> in, std::span<float> out) override;
  Handle all_gather(std::span<const float> in, std::span<float> out) override;
  Handle broadcast(std::span<float> buffer, int root) override;
  Handle isend(std::span<const float> buffer, int peer, int tag) override;
  Handle irecv(std::span<float> buffer, int peer, int tag) override;
  void barrier() override;
  void all_reduce_sum(std::span<double> values) override;
  using Comm::all_reduce_sum;
  void broadcast_bytes(std::span<std::byte> bytes, int root) override;

  // For what needs MPI itself (parallel HDF5's MPI-IO), handed over explicitly.
  MPI_Comm native() const { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

// The communicators a rank needs for the grid: its data-parallel group, its pipeline, and the
// first and last stage of its pipeline (which share a tied embedding; other stages: alone).
struct GridComms {
  Grid grid;
  GridCoord coord;
  std::unique_ptr<MpiComm> world, dp, pp, embedding;
};
// Collective over MPI_COMM_WORLD, whose size must equal grid.size().
GridComms make_grid_comms(const Grid& grid);

}  // namespace kl
