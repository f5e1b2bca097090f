#!/usr/bin/env bash
# Configures and builds kilolayer (Release) into build/. Extra arguments go to CMake's configure
# step, e.g. ./launch/build.sh -DKL_PORTABLE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/setup.sh
build_dir=${KL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$build_dir.configure.log" 2>&1 || {
  cat "$build_dir.configure.log"
  exit 1
}
cmake --build "$build_dir" -j "$(nproc)"
