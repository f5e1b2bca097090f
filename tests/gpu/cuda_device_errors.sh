#!/usr/bin/env bash
# run.device = cuda where it cannot run: a binary built without the CUDA backend, or a machine
# without a GPU, stops before any training with exit status 2 and one message saying which.
# Skipped (77) where a GPU is present: the GPU tests (ctest -L gpu) cover that case.
set -euo pipefail
kilolayer=$1
source "$(dirname "$0")/../lib/common.sh"
printf 'the quick brown fox jumps over the lazy dog.\n%.0s' $(seq 200) >"$work/text.txt"
"$kilolayer" data --out "$work/data" --val-every 5 --block 256 "$work/text.txt" >/dev/null
write_ini "$work/run.ini" model.seq_len=16 run.threads= run.device=cuda
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
