// Per-layer diagnostics in a build without HDF5 (CMake: -DKL_HDF5=OFF): the config refuses
// run.diag_every > 0 before any work (src/config/config.cpp); this only keeps that promise if
// something asks anyway.
#include "src/train/diagnostics.h"
#include "src/util/error.h"

namespace kl {

void DiagnosticsWriter::append(const DiagnosticsRow&) const {
  throw UserError(path_ + ": per-layer diagnostics are written to HDF5, and this kilolayer was built "
                  "without HDF5 (-DKL_HDF5=OFF): set run.diag_every = 0");
}

}  // namespace kl
