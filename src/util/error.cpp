#include "src/util/error.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace kl {

void fatal(const char* file, int line, const char* expression, const std::string& message) {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool mpi_up = initialized && !finalized;
  if (mpi_up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "[kilolayer rank %d] %s:%d: check `%s` failed: %s\n", rank, file, line,
               expression, message.c_str());
  std::fflush(stderr);
  if (mpi_up) MPI_Abort(MPI_COMM_WORLD, kExitInternalError);
  std::_Exit(kExitInternalError);
}

}  // namespace kl
