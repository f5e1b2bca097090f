#include "comm/grid.h"

#include <stdexcept>
#include <string>

namespace kl {

Grid::Grid(int dp, int pp) : dp_(dp), pp_(pp) {
  if (dp < 1 || pp < 1) {
    throw std::invalid_argument("grid needs dp >= 1 and pp >= 1, got dp=" + std::to_string(dp) +
                                " pp=" + std::to_string(pp));
  }
}

GridCoord Grid::coord(int rank) const {
  if (rank < 0 || rank >= size()) {
    throw std::out_of_range("rank " + std::to_string(rank) + " outside a grid of " + std::to_string(size()));
  }
  return {rank % dp_, rank / dp_};
}

int Grid::rank(GridCoord c) const {
  if (c.dp < 0 || c.dp >= dp_ || c.pp < 0 || c.pp >= pp_) {
    throw std::out_of_range("coordinate (dp " + std::to_string(c.dp) + ", pp " + std::to_string(c.pp) +
                            ") outside a " + std::to_string(dp_) + " x " + std::to_string(pp_) + " grid");
  }
  return c.pp * dp_ + c.dp;
}

std::vector<int> Grid::dp_group(int pp_index) const {
  std::vector<int> ranks;
  for (int d = 0; d < dp_; ++d) ranks.push_back(rank({d, pp_index}));
  return ranks;
}

std::vector<int> Grid::pp_group(int dp_index) const {
  std::vector<int> ranks;
  for (int p = 0; p < pp_; ++p) ranks.push_back(rank({dp_index, p}));
  return ranks;
}

}  // namespace kl
