// The rank grid, without MPI: golden layouts for small grids and the invariants for every grid of
// up to 64 ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "comm/grid.h"

namespace kl {
namespace {

TEST(Grid, GoldenTwoByThree) {
  const Grid g(2, 3);  // dp 2, pp 3: rank = pp x 2 + dp
  EXPECT_EQ(g.size(), 6);
  EXPECT_EQ(g.coord(0), (GridCoord{0, 0}));
  EXPECT_EQ(g.coord(1), (GridCoord{1, 0}));
  EXPECT_EQ(g.coord(2), (GridCoord{0, 1}));
  EXPECT_EQ(g.coord(5), (GridCoord{1, 2}));
  EXPECT_EQ(g.dp_group(0), (std::vector<int>{0, 1}));
  EXPECT_EQ(g.dp_group(2), (std::vector<int>{4, 5}));
  EXPECT_EQ(g.pp_group(0), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(g.pp_group(1), (std::vector<int>{1, 3, 5}));
}

TEST(Grid, GoldenFourByTwo) {
  const Grid g(4, 2);
  EXPECT_EQ(g.dp_group(1), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(g.pp_group(3), (std::vector<int>{3, 7}));
  EXPECT_EQ(g.rank({2, 1}), 6);
}

TEST(Grid, PureDataAndPurePipeline) {
  const Grid dp_only(8, 1), pp_only(1, 8);
  EXPECT_EQ(dp_only.dp_group(0), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(dp_only.pp_group(5), (std::vector<int>{5}));
  EXPECT_EQ(pp_only.pp_group(0), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(pp_only.dp_group(3), (std::vector<int>{3}));
}

TEST(Grid, EveryGridUpTo64Ranks) {
  for (int dp = 1; dp <= 64; ++dp) {
    for (int pp = 1; dp * pp <= 64; ++pp) {
      const Grid g(dp, pp);
      ASSERT_EQ(g.size(), dp * pp);
      std::set<std::pair<int, int>> seen;
      for (int r = 0; r < g.size(); ++r) {
        const GridCoord c = g.coord(r);
        ASSERT_TRUE(c.dp >= 0 && c.dp < dp && c.pp >= 0 && c.pp < pp);
        ASSERT_EQ(g.rank(c), r) << dp << "x" << pp;  // a bijection
        seen.insert({c.dp, c.pp});
      }
      ASSERT_EQ(static_cast<int>(seen.size()), g.size());
      // The dp groups partition the ranks; each is consecutive (shares a node) and holds one stage.
      std::vector<int> count(static_cast<size_t>(g.size()), 0);
      for (int p = 0; p < pp; ++p) {
        const auto group = g.dp_group(p);
        ASSERT_EQ(static_cast<int>(group.size()), dp);
        for (size_t i = 0; i < group.size(); ++i) {
          ASSERT_EQ(group[i], group[0] + static_cast<int>(i));
          ASSERT_EQ(g.coord(group[i]).pp, p);
          ASSERT_EQ(g.coord(group[i]).dp, static_cast<int>(i));
          ++count[static_cast<size_t>(group[i])];
        }
      }
      // The pipelines partition them too, in stage order, and meet each dp group exactly once.
      for (int d = 0; d < dp; ++d) {
        const auto line = g.pp_group(d);
        ASSERT_EQ(static_cast<int>(line.size()), pp);
        for (int p = 0; p < pp; ++p) {
          ASSERT_EQ(g.coord(line[static_cast<size_t>(p)]), (GridCoord{d, p}));
          ++count[static_cast<size_t>(line[static_cast<size_t>(p)])];
        }
      }
      ASSERT_TRUE(std::all_of(count.begin(), count.end(), [](int n) { return n == 2; }));
    }
  }
}

TEST(Grid, RejectsBadShapesAndRanks) {
  EXPECT_THROW(Grid(0, 1), std::invalid_argument);
  EXPECT_THROW(Grid(2, -1), std::invalid_argument);
  const Grid g(2, 2);
  EXPECT_THROW(g.coord(4), std::out_of_range);
  EXPECT_THROW(g.coord(-1), std::out_of_range);
  EXPECT_THROW(g.rank({2, 0}), std::out_of_range);
}

}  // namespace
}  // namespace kl
