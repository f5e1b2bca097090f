#!/usr/bin/env bash
# Training throughput of kilolayer beside the same model in PyTorch, same machine, same threads, in
# one run: the two alternate, several repetitions, medians reported, and the ratio.
#
#   bench/cpu_vs_torch.sh [--layers 128] [--d_model 128] [--heads 2] [--seq_len 128] [--batch 8]
#                         [--threads 2] [--steps 8] [--reps 3]
# Model FLOPs per token: 6 N + 12 L d T (N parameters). The peak is a large sgemm through the same
# OpenBLAS and thread count, measured in each repetition too.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=128 d_model=128 heads=2 seq_len=128 batch=8 threads=2 steps=8 reps=3 vocab=256
source bench/common.sh
parse_options "layers d_model heads seq_len batch threads steps reps" "$@"
prepare_workdir
write_bench_ini "[run]" "threads = $threads"

kl_rates=() torch_rates=() peak_rates=()
for rep in $(seq "$reps"); do
  peak_rates+=("$(build/kl_sgemm_peak 2048 "$threads" 3)")
  build/kilolayer train --config "$work/bench.ini" >/dev/null
  # Median tokens/s over the steps after the first.
  kl=$(run_tokens_per_s)
  out=$(/usr/bin/python3 bench/torch_train.py --layers "$layers" --d_model "$d_model" --heads "$heads" \
        --seq_len "$seq_len" --batch "$batch" --vocab "$vocab" --steps "$steps" --threads "$threads")
  pt=$(sed 's/.*"tokens_per_s": \([^,}]*\).*/\1/' <<<"$out")
  params=$(sed 's/.*"parameters": \([^,}]*\).*/\1/' <<<"$out")
  printf 'rep %d: kilolayer %.0f tok/s, pytorch %.0f tok/s, sgemm %s GFLOP/s\n' "$rep" "$kl" "$pt" "${peak_rates[-1]}"
  kl_rates+=("$kl") torch_rates+=("$pt")
done
kl=$(printf '%s\n' "${kl_rates[@]}" | median)
pt=$(printf '%s\n' "${torch_rates[@]}" | median)
peak=$(printf '%s\n' "${peak_rates[@]}" | median)
awk -v kl="$kl" -v pt="$pt" -v peak="$peak" -v n="$params" -v L="$layers" -v d="$d_model" -v T="$seq_len" \
    -v B="$batch" -v th="$threads" 'BEGIN {
  flops = 6 * n + 12 * L * d * T
  printf "model: L=%d d=%d T=%d batch=%d, N=%d parameters, %.3g FLOPs/token, %d threads\n", L, d, T, B, n, flops, th
  printf "kilolayer: %8.0f tok/s  %6.1f GFLOP/s  %.2f s/step\n", kl, kl * flops / 1e9, B * T / kl
  printf "pytorch:   %8.0f tok/s  %6.1f GFLOP/s  %.2f s/step\n", pt, pt * flops / 1e9, B * T / pt
  printf "sgemm 2048^3 (OpenBLAS, same threads): %.1f GFLOP/s\n", peak
  printf "ratio kilolayer/pytorch: %.2f\n", kl / pt
  printf "kilolayer model FLOPs / sgemm rate: %.1f%%\n", 100 * kl * flops / 1e9 / peak
}'
