#include "src/util/error.h"

#ifdef KL_HAVE_MPI
#include <mpi.h>
#endif

#include <cstdio>
#include <cstdlib>

namespace kl {

void fatal(const char* file, int line, const char* expression, const std::string& message) {
  int rank = 0;  // a build without MPI (KL_MPI=OFF) is one process
#ifdef KL_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool mpi_up = initialized && !finalized;
  if (mpi_up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
#endif
  std::fprintf(stderr, "[kilolayer rank %d] %s:%d: check `%s` failed: %s\n", rank, file, line,
               expression, message.c_str());
  std::fflush(stderr);
#ifdef KL_HAVE_MPI
  if (mpi_up) MPI_Abort(MPI_COMM_WORLD, kExitInternalError);
#endif
  std::_Exit(kExitInternalError);
}

}  // namespace kl
