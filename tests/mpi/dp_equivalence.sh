#!/usr/bin/env bash
# Data parallelism under a real mpirun reproduces the single-process run: for the same global
# batch, dp in {1, 2, 4} (and ZeRO-1) give per-step losses equal within 1e-5 relative for 20 steps
# and the same final parameters, with dropout 0 and 0.1.
#   tests/dp_equivalence.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 4 "$@"

status=0
groups=()
for dropout in 0.0 0.1; do
  d=d$dropout
  run "${d}_dp1" 1 1 --model.dropout=$dropout || status=1
  run "${d}_dp2" 2 1 --model.dropout=$dropout || status=1
  run "${d}_dp4" 4 1 --model.dropout=$dropout || status=1
  run "${d}_dp2_zero" 2 1 --model.dropout=$dropout --parallel.zero=1 || status=1
  run "${d}_dp4_zero" 4 1 --model.dropout=$dropout --parallel.zero=1 || status=1
  run "${d}_dp2_blocking" 2 1 --model.dropout=$dropout --parallel.overlap=false || status=1
  groups+=("${d}_dp1=${d}_dp2,${d}_dp4,${d}_dp2_zero,${d}_dp4_zero,${d}_dp2_blocking")
done
[ "$status" -eq 0 ] || exit 1
/usr/bin/python3 "$(dirname "$0")/../lib/compare_runs.py" "$work" 20 "${groups[@]}"
