// The rank grid: world rank <-> (dp, pp) coordinates and the members of each group. Pure integer
// arithmetic, no MPI: comm/mpi_comm.cpp turns the groups into communicators.
//
// Rank order: rank = pp_index x dp + dp_index. The ranks of one data-parallel group are consecutive,
// so with ranks packed onto nodes in order (mpirun and srun's default) they share a node whenever dp
// divides the ranks per node. That puts the heaviest traffic, the all-reduce of every gradient every
// step, on the closest links; pipeline traffic (one activation tensor per micro-batch and stage
// boundary) crosses nodes instead. Megatron-LM orders its groups the same way (dp inside pp).
#pragma once

#include <vector>

namespace kl {

struct GridCoord {
  int dp = 0;  // index inside the data-parallel group (which share of the batch)
  int pp = 0;  // pipeline stage
  bool operator==(const GridCoord&) const = default;
};

class Grid {
 public:
  // Throws std::invalid_argument unless dp >= 1 and pp >= 1.
  Grid(int dp, int pp);

  int dp() const { return dp_; }
  int pp() const { return pp_; }
  int size() const { return dp_ * pp_; }

  GridCoord coord(int rank) const;  // throws std::out_of_range for a rank outside the grid
  int rank(GridCoord coord) const;  // throws std::out_of_range for a coordinate outside the grid

  // The ranks holding pipeline stage `pp_index`, in dp order: one data-parallel group.
  std::vector<int> dp_group(int pp_index) const;
  // The ranks of one pipeline (data share `dp_index`), in stage order.
  std::vector<int> pp_group(int dp_index) const;

 private:
  int dp_, pp_;
};

}  // namespace kl
