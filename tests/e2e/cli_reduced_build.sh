#!/usr/bin/env bash
# A build without MPI or HDF5 (CMake -DKL_MPI=OFF / -DKL_HDF5=OFF): what it cannot do is refused
# before any work with exit 2 and a message saying which library is missing, and a one-process job
# with checkpoints off still trains.
#   tests/cli_reduced_build.sh KILOLAYER MPI(ON|OFF) HDF5(ON|OFF)
set -u
bin=$1 mpi=$2 hdf5=$3
source "$(dirname "$0")/../lib/cli.sh"

printf 'a small text for a reduced build of kilolayer to learn from.\n%.0s' {1..80} >"$work/text.txt"
"$bin" data --out "$work/data" --block 64 "$work/text.txt" >/dev/null || { echo "FAIL: data command"; exit 1; }
write_ini "$work/ok.ini" train.steps=3 train.eval_every=3 train.eval_batches=1

if [ "$mpi" = OFF ]; then
  expect_error "dp without MPI" "built without MPI" -- "$bin" train --config "$work/ok.ini" --parallel.dp=2 --train.micro_batch=1
  expect_error "pp without MPI" "parallel.dp x parallel.pp = 2.*without MPI" -- "$bin" train --config "$work/ok.ini" --parallel.pp=2
fi
if [ "$hdf5" = OFF ]; then
  expect_error "checkpoint.dir without HDF5" "checkpoint.dir.*without HDF5" \
    -- "$bin" train --config "$work/ok.ini" --checkpoint.dir="$work/ckpt"
  sed 's/^dir = none$/dir =/' "$work/ok.ini" >"$work/empty_dir.ini"  # "": <run.dir>/checkpoints
  expect_error "default checkpoint dir spelled out" "checkpoint.dir.*without HDF5" -- "$bin" train --config "$work/empty_dir.ini"
  expect_error "resume from a path without HDF5" "checkpoint.resume.*without HDF5" \
    -- "$bin" train --config "$work/ok.ini" --checkpoint.resume="$work/ckpt"
  expect_error "diagnostics without HDF5" "run.diag_every.*without HDF5" -- "$bin" train --config "$work/ok.ini" --run.diag_every=1
  expect_error "eval of a checkpoint without HDF5" "without HDF5" -- "$bin" eval --config "$work/ok.ini" --checkpoint "$work/ckpt"
  expect_error "inspect without HDF5" "without HDF5" -- "$bin" inspect "$work/ckpt"
  # Without HDF5 checkpoints are off by default: a config that does not mention them trains.
  grep -v -e '^\[checkpoint\]' -e '^dir = none' "$work/ok.ini" >"$work/default.ini"
  trains_default() { "$bin" train --config "$work/default.ini" >/dev/null 2>&1 && [ -s "$work/run/metrics.jsonl" ]; }
  check "a config without a [checkpoint] section trains" trains_default
fi
rm -rf "$work/run"
trains_one_process() {
  "$bin" train --config "$work/ok.ini" >"$work/log" 2>&1 && [ "$(wc -l <"$work/run/metrics.jsonl")" -ge 3 ] ||
    { cat "$work/log"; false; }
}
check "the one-process job trains" trains_one_process
report cli_reduced_build
