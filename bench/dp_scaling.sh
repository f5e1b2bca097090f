#!/usr/bin/env bash
# Data-parallel scaling on this machine, one run, real mpirun:
#  - efficiency of dp=2 against dp=1 at equal per-rank batch and threads:
#      tokens/s(dp=2) / (2 x tokens/s(dp=1));
#  - the share of gradient all-reduce time hidden behind the backward pass at dp=2:
#      1 - wait(overlapped) / wait(all buckets reduced after backward), medians over steps;
#  - the same for ZeRO-1 at dp=2 (parallel.zero=1): its reduce-scatters overlapped with the backward
#    pass and its all-gathers with the next forward pass, against both run after the backward pass.
#   bench/dp_scaling.sh [--layers 32] [--d_model 128] [--batch 4] [--steps 12] [--bucket_mb 4] [--reps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=32 d_model=128 batch=4 steps=12 bucket_mb=4 reps=3
source bench/common.sh
parse_options "layers d_model batch steps bucket_mb reps" "$@"
prepare_workdir
cat >"$work/bench.ini" <<INI
[model]
layers = $layers
d_model = $d_model
heads = 2
seq_len = 128
[train]
steps = $steps
micro_batch = $batch
eval_every = 0
eval_batches = 1
$data_ini
[parallel]
bucket_mb = $bucket_mb
[checkpoint]
dir = none
[run]
threads = 1
INI
mpirun=(mpirun --oversubscribe --allow-run-as-root --bind-to core)
# field NAME KEY: median of KEY over the steps after the first
field() { tail -n +2 "$work/$1/metrics.jsonl" | sed "s/.*\"$2\":\([^,}]*\).*/\1/" | median; }

one=() two=() hidden=() zero_hidden=()
for rep in $(seq "$reps"); do
  "${mpirun[@]}" -np 1 build/kilolayer train --config "$work/bench.ini" --train.global_batch="$batch" \
    --run.dir="$work/dp1" >/dev/null
  "${mpirun[@]}" -np 2 build/kilolayer train --config "$work/bench.ini" --train.global_batch=$((2 * batch)) \
    --parallel.dp=2 --run.dir="$work/dp2" >/dev/null
  "${mpirun[@]}" -np 2 build/kilolayer train --config "$work/bench.ini" --train.global_batch=$((2 * batch)) \
    --parallel.dp=2 --parallel.overlap=false --run.dir="$work/dp2_blocking" >/dev/null
  "${mpirun[@]}" -np 2 build/kilolayer train --config "$work/bench.ini" --train.global_batch=$((2 * batch)) \
    --parallel.dp=2 --parallel.zero=1 --run.dir="$work/zero2" >/dev/null
  "${mpirun[@]}" -np 2 build/kilolayer train --config "$work/bench.ini" --train.global_batch=$((2 * batch)) \
    --parallel.dp=2 --parallel.zero=1 --parallel.overlap=false --run.dir="$work/zero2_blocking" >/dev/null
  t1=$(field dp1 tokens_per_s) t2=$(field dp2 tokens_per_s)
  w_on=$(field dp2 comm_wait_s) w_off=$(field dp2_blocking comm_wait_s)
  h=$(awk -v a="$w_on" -v b="$w_off" 'BEGIN {print 1 - a / b}')
  printf 'rep %d: dp1 %.0f tok/s, dp2 %.0f tok/s, wait overlapped %.4f s, after backward %.4f s, hidden %.1f%%\n' \
    "$rep" "$t1" "$t2" "$w_on" "$w_off" "$(awk -v h="$h" 'BEGIN {print 100 * h}')"
  z_on=$(field zero2 comm_wait_s) z_off=$(field zero2_blocking comm_wait_s)
  zh=$(awk -v a="$z_on" -v b="$z_off" 'BEGIN {print 1 - a / b}')
  printf 'rep %d: ZeRO-1 dp2 %.0f tok/s, wait overlapped %.4f s, after backward %.4f s (%.0f tok/s), hidden %.1f%%\n' \
    "$rep" "$(field zero2 tokens_per_s)" "$z_on" "$z_off" "$(field zero2_blocking tokens_per_s)" \
    "$(awk -v h="$zh" 'BEGIN {print 100 * h}')"
  one+=("$t1") two+=("$t2") hidden+=("$h") zero_hidden+=("$zh")
done
t1=$(printf '%s\n' "${one[@]}" | median) t2=$(printf '%s\n' "${two[@]}" | median)
h=$(printf '%s\n' "${hidden[@]}" | median) zh=$(printf '%s\n' "${zero_hidden[@]}" | median)
bytes=$(tail -1 "$work/dp2/metrics.jsonl" | sed 's/.*"bytes_reduced":\([^,}]*\).*/\1/')
awk -v t1="$t1" -v t2="$t2" -v h="$h" -v zh="$zh" -v bytes="$bytes" -v L="$layers" -v d="$d_model" -v b="$batch" 'BEGIN {
  printf "model L=%d d=%d T=128, %d sequences per rank, 1 thread per rank, %.1f MB of gradients per step\n", L, d, b, bytes / 1e6
  printf "dp=2 efficiency against dp=1 at equal per-rank batch: %.1f%%\n", 100 * t2 / (2 * t1)
  printf "all-reduce time hidden behind backward at dp=2: %.1f%%\n", 100 * h
  printf "ZeRO-1 reduce-scatter + all-gather time hidden behind backward and forward at dp=2: %.1f%%\n", 100 * zh
}'
