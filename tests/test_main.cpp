// GoogleTest's main for kl_tests and kl_torch_tests: two OpenMP threads unless OMP_NUM_THREADS says
// otherwise, so that tests checking determinism run with a known thread count on any machine.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>

int main(int argc, char** argv) {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(2);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
