#!/usr/bin/env bash
# run.device = cuda where it cannot run: a binary built without the CUDA backend, or a machine
# without a GPU, stops before any training with exit status 2 and one message saying which.
# Skipped (77) where a GPU is present: the GPU tests (ctest -L gpu) cover that case.
set -euo pipefail
kilolayer=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'the quick brown fox jumps over the lazy dog.\n%.0s' $(seq 200) >"$work/text.txt"
"$kilolayer" data --out "$work/data" --val-every 5 --block 256 "$work/text.txt" >/dev/null
cat >"$work/run.ini" <<INI
[model]
layers = 2
d_model = 16
heads = 2
seq_len = 16
[train]
steps = 2
global_batch = 2
micro_batch = 2
[data]
train = $work/data/train.bin
val = $work/data/val.bin
[checkpoint]
dir = none
[run]
dir = $work/run
device = cuda
INI
status=0
"$kilolayer" train --config "$work/run.ini" >"$work/out" 2>&1 || status=$?
if [ "$status" = 0 ] && grep -q "whole model on GPU" "$work/out"; then
  echo "a GPU is present: nothing to check here (see ctest -L gpu)"
  exit 77
fi
cat "$work/out"
[ "$status" = 2 ] || { echo "FAIL: exit status $status, want 2"; exit 1; }
grep -q -E "built without the CUDA backend|no CUDA device" "$work/out" || { echo "FAIL: no clear message"; exit 1; }
[ ! -e "$work/run/metrics.jsonl" ] || { echo "FAIL: training started"; exit 1; }
echo "ok: run.device = cuda refused with exit 2"
