#!/usr/bin/env bash
# Training throughput of two kilolayer binaries on the same model, alternating in one run (these
# machines are shared and noisy: only a ratio measured side by side means anything). For "does this
# change regress the CPU path": build the old commit elsewhere (git worktree) and pass both.
#
#   bench/ab_builds.sh --a OLD/kilolayer --b NEW/kilolayer [--layers 128] [--d_model 128] [--heads 2]
#                      [--seq_len 128] [--batch 8] [--threads 2] [--steps 6] [--reps 3]
#                      [--precision fp32|bf16]
# Prints each repetition's tokens/s (median over the steps after the first) and the medians' ratio b/a.
set -euo pipefail
cd "$(dirname "$0")/.."
a="" b="" layers=128 d_model=128 heads=2 seq_len=128 batch=8 threads=2 steps=6 reps=3 vocab=256 precision=fp32
source bench/common.sh
parse_options "a b layers d_model heads seq_len batch threads steps reps precision" "$@"
[ -x "$a" ] && [ -x "$b" ] || { echo "usage: bench/ab_builds.sh --a BIN --b BIN [options]" >&2; exit 2; }
case "$precision" in fp32|bf16) ;; *) echo "--precision must be fp32 or bf16, not '$precision'" >&2; exit 2 ;; esac
prepare_workdir "$b"
write_bench_ini "[run]" "threads = $threads" "precision = $precision"

rate() {  # BIN: median tokens/s over the steps after the first
  "$1" train --config "$work/bench.ini" >/dev/null
  run_tokens_per_s
}
a_rates=() b_rates=()
for rep in $(seq "$reps"); do
  a_rates+=("$(rate "$a")")
  b_rates+=("$(rate "$b")")
  printf 'rep %d: a %.0f tok/s, b %.0f tok/s\n' "$rep" "${a_rates[-1]}" "${b_rates[-1]}"
done
ra=$(printf '%s\n' "${a_rates[@]}" | median)
rb=$(printf '%s\n' "${b_rates[@]}" | median)
awk -v a="$ra" -v b="$rb" -v L="$layers" -v d="$d_model" -v T="$seq_len" -v B="$batch" -v th="$threads" \
    -v p="$precision" 'BEGIN {
  printf "model: L=%d d=%d T=%d batch=%d, %d threads, %s\n", L, d, T, B, th, p
  printf "a: %.0f tok/s   b: %.0f tok/s   ratio b/a: %.3f\n", a, b, b / a
}'
