// GoogleTest's main for kl_tests and kl_torch_tests: two OpenMP threads unless OMP_NUM_THREADS says
// otherwise, so that tests checking determinism run with a known thread count on any machine; and a
// scratch directory of this process's own as TMPDIR (std::filesystem::temp_directory_path), removed
// at the end, so that the files tests write never pile up in /tmp.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(2);
  std::string scratch = (std::filesystem::temp_directory_path() / "kl_tests.XXXXXX").string();
  const bool have_scratch = ::mkdtemp(scratch.data()) != nullptr;
  if (have_scratch) ::setenv("TMPDIR", scratch.c_str(), 1);
  ::testing::InitGoogleTest(&argc, argv);
  const int status = RUN_ALL_TESTS();
  std::error_code ignored;
  if (have_scratch) std::filesystem::remove_all(scratch, ignored);
  return status;
}
