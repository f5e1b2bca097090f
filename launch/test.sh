#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (CTest + GoogleTest). Extra arguments go to
# ctest: ./launch/test.sh -L unit (GoogleTest in one process, under a minute), -L mpi, -L e2e, -L gpu,
# -L fuzz, -L faults (docs/testing.md), or -R Config.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/build.sh
cd "${KL_BUILD_DIR:-build}"
# Tests run side by side with more threads than cores: idle OpenMP threads sleep instead of spinning.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
