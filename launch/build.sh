#!/usr/bin/env bash
# Configures and builds kilolayer (Release) into build/ (or $KL_BUILD_DIR). Extra arguments go to
# CMake's configure step, e.g. ./launch/build.sh -DKL_PORTABLE=ON; the configure output is kept in
# <build dir>/configure.log.
#
# First it installs the missing Debian packages (launch/setup.sh), except where the system libraries
# are absent on purpose: with KL_NO_SETUP=1, or when a library is switched off (-DKL_MPI=OFF,
# -DKL_HDF5=OFF, -DKL_BOOST=OFF, -DKL_BLAS=OFF, -DKL_SENTENCEPIECE=OFF: a machine, such as a lent GPU machine, that has
# only a compiler, CMake and CUDA; see tests/gpu/device_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
setup=1
[ "${KL_NO_SETUP:-0}" = 1 ] && setup=0
for arg in "$@"; do
  case $arg in
    -DKL_MPI=OFF | -DKL_HDF5=OFF | -DKL_BOOST=OFF | -DKL_BLAS=OFF | -DKL_ONEDNN=OFF | -DKL_SENTENCEPIECE=OFF) setup=0 ;;
  esac
done
[ "$setup" = 1 ] && ./launch/setup.sh
build_dir=${KL_BUILD_DIR:-build}
mkdir -p "$build_dir"
log=$build_dir/configure.log
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$log" 2>&1 || {
  cat "$log"
  exit 1
}
cmake --build "$build_dir" -j "${KL_JOBS:-$(nproc)}"
