#!/usr/bin/env bash
# How long a checkpoint save stops training, synchronous (checkpoint.async = false: the training
# thread writes, fsyncs and commits) against asynchronous (the default: a writer thread per rank),
# in interleaved runs of one process, for a state of about 150 MB (16 layers, d_model 256: 12.7M
# parameters, and two AdamW moments, as float32). Per save: the "training stalled" seconds of its
# progress line, medians over the periodic saves (the last save, which the run waits for, left out);
# per run: the wall time, against a run without checkpoints (the writer thread takes cycles too).
#   bench/checkpoint_stall.sh [--layers 16] [--d_model 256] [--steps 9] [--every 2] [--reps 3] [--threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=16 d_model=256 steps=9 every=2 reps=3 threads=2
source bench/common.sh
parse_options "layers d_model steps every reps threads" "$@"
prepare_workdir
heads=4 seq_len=64 vocab=256 batch=2
write_bench_ini "[run]" "threads = $threads"

# one NAME ASYNC|none: a run; prints its wall seconds, leaves its log in $work/NAME.log
one() {
  local name=$1 mode=$2 start
  rm -rf "$work/ckpt"
  local dir=(--checkpoint.dir="$work/ckpt" --checkpoint.every="$every" --checkpoint.keep=1 --checkpoint.async="$mode")
  [ "$mode" = none ] && dir=(--checkpoint.dir=none)
  start=$(date +%s.%N)
  build/kilolayer train --config "$work/bench.ini" "${dir[@]}" >"$work/$name.log" 2>&1
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
}
# stalls NAME: the stall of each periodic save, one a line
stalls() { grep "^checkpoint: step" "$work/$1.log" | head -n -1 | sed 's/.*training stalled \([0-9.]*\) s.*/\1/'; }

: >"$work/async.all" && : >"$work/sync.all"
walls_async=() walls_sync=() walls_none=()
for rep in $(seq "$reps"); do
  walls_async+=("$(one async true)") && stalls async >>"$work/async.all"
  walls_sync+=("$(one sync false)") && stalls sync >>"$work/sync.all"
  walls_none+=("$(one none none)")
  printf 'rep %d: stalls async %s s | sync %s s | run wall time async %s s, sync %s s, no checkpoints %s s\n' "$rep" \
    "$(stalls async | paste -sd, -)" "$(stalls sync | paste -sd, -)" "${walls_async[-1]}" "${walls_sync[-1]}" "${walls_none[-1]}"
done
mb=$(grep "^checkpoint: step" "$work/sync.log" | tail -1 | sed 's/.*(\([0-9.]*\) MB in.*/\1/')
a=$(median <"$work/async.all") s=$(median <"$work/sync.all")
wa=$(printf '%s\n' "${walls_async[@]}" | median) ws=$(printf '%s\n' "${walls_sync[@]}" | median)
wn=$(printf '%s\n' "${walls_none[@]}" | median)
awk -v a="$a" -v s="$s" -v mb="$mb" -v wa="$wa" -v ws="$ws" -v wn="$wn" -v L="$layers" -v d="$d_model" \
    -v n="$(wc -l <"$work/sync.all")" 'BEGIN {
  printf "state %.1f MB (L=%d d=%d), %d periodic saves per mode, medians:\n", mb, L, d, n
  printf "training stalled per save: async %.3f s, sync %.3f s: async/sync = %.1f%%\n", a, s, 100 * a / s
  printf "run wall time: async %.1f s, sync %.1f s, without checkpoints %.1f s\n", wa, ws, wn
}'
