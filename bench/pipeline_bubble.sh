#!/usr/bin/env bash
# The pipeline bubble, measured against the schedule's formula, in one run under real mpirun: every
# schedule at the same pp and micro-batches, one thread per stage. For each: the measured bubble
# (mean over stages of the time blocked on point-to-point / step time, median over the steps after
# the first), the theoretical one, tokens/s and its ratio to 1f1b's, and the activation memory each
# stage held at its peak.
#   bench/pipeline_bubble.sh [--pp 4] [--micro 8] [--layers 32] [--d_model 128] [--steps 6] [--virtual 2]
# On a machine with fewer cores than pp, stages share cores and the wait includes a neighbour's
# time off the core: compare schedules with each other, not with the formula alone.
set -euo pipefail
cd "$(dirname "$0")/.."
pp=4 micro=8 layers=32 d_model=128 steps=6 virtual=2
source bench/common.sh
parse_options "pp micro layers d_model steps virtual" "$@"
prepare_workdir
cat >"$work/bench.ini" <<INI
[model]
layers = $layers
d_model = $d_model
heads = 2
seq_len = 128
dropout = 0.1
[train]
steps = $steps
global_batch = $micro
micro_batch = 1
eval_every = 0
eval_batches = 1
$data_ini
[parallel]
pp = $pp
[checkpoint]
dir = none
[run]
threads = 1
INI
mpirun=(mpirun --oversubscribe --allow-run-as-root)
# field NAME KEY: median of KEY over the steps after the first
field() { tail -n +2 "$work/$1/metrics.jsonl" | sed "s/.*\"$2\":\([^],}]*\).*/\1/" | median; }
list() { tail -1 "$work/$1/metrics.jsonl" | sed "s/.*\"$2\":\[\([^]]*\)\].*/\1/"; }

printf 'pp=%d, %d micro-batches of 1 x 128 tokens, L=%d d=%d, 1 thread per stage, %d cores\n' \
  "$pp" "$micro" "$layers" "$d_model" "$(nproc)"
printf '%-12s %9s %9s %10s %9s  %s\n' schedule measured formula tokens/s vs_1f1b "activation MB per stage"
base=""
for schedule in 1f1b gpipe interleaved zb1; do
  extra=()
  [ "$schedule" = interleaved ] && extra=(--parallel.virtual="$virtual")
  "${mpirun[@]}" -np "$pp" build/kilolayer train --config "$work/bench.ini" --parallel.schedule="$schedule" \
    "${extra[@]}" --run.dir="$work/$schedule" >/dev/null
  tps=$(field "$schedule" tokens_per_s)
  [ -n "$base" ] || base=$tps
  printf '%-12s %9.4f %9.4f %10.0f %8.2fx  %s\n' "$schedule" "$(field "$schedule" bubble)" \
    "$(field "$schedule" bubble_theory)" "$tps" "$(awk -v a="$tps" -v b="$base" 'BEGIN {print a / b}')" \
    "$(list "$schedule" stage_activation_mb)"
done
