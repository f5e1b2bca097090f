#!/usr/bin/env bash
# Training throughput on one GPU: kilolayer (run.device = cuda) beside PyTorch training the same
# model (tools/torch_gpt.py, through bench/torch_train_gpu.py) in the same run, alternating, several
# repetitions, medians and their ratio. Defaults: 128 layers, d_model 1024, 16 heads, 1024 tokens of
# context, 8 sequences a step, bf16 with fp32 master weights, block recomputation on both sides.
#
#   bench/gpu_vs_torch.sh [--layers 128] [--d_model 1024] [--heads 16] [--seq_len 1024] [--batch 8]
#                         [--micro_batch 8] [--precision bf16] [--recompute block] [--steps 6]
#                         [--reps 2] [--peak_tflops 989]
#
# MFU = tokens/s x (6 N + 12 L d T) / peak; the peak is the data-sheet dense bf16 rate of an H100
# SXM (989 TFLOP/s; pass --peak_tflops for another GPU or for fp32/TF32).
# The PyTorch side runs under $KL_PYTHON (default: the python3 on PATH), which needs CUDA.
# Exit status 77 with a message when there is no GPU (or no CUDA build can be made).
set -euo pipefail
cd "$(dirname "$0")/.."
layers=128 d_model=1024 heads=16 seq_len=1024 batch=8 micro_batch=8 precision=bf16 recompute=block
steps=6 reps=2 peak_tflops=989 vocab=256
source bench/common.sh
# A GPU machine's CUDA-enabled PyTorch lives in its own environment, not in Debian's /usr/bin/python3.
python=${KL_PYTHON:-python3}
parse_options "layers d_model heads seq_len batch micro_batch precision recompute steps reps peak_tflops" "$@"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "gpu_vs_torch: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to measure" >&2
  exit 77
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)

# A CUDA build of kilolayer: $KL_BUILD_DIR (default build-cuda), configured with KL_CUDA=ON (made
# here when missing; extra CMake options in $KL_CMAKE_OPTIONS, e.g. tests/gpu/device_check.sh's).
build_dir=${KL_BUILD_DIR:-build-cuda}
kl=$build_dir/kilolayer
if [ ! -x "$kl" ] || ! ldd "$kl" | grep -q libcudart; then
  # shellcheck disable=SC2086
  KL_BUILD_DIR=$build_dir ./launch/build.sh -DKL_CUDA=ON ${KL_CMAKE_OPTIONS:-} >/dev/null || {
    echo "gpu_vs_torch: cannot build kilolayer with the CUDA backend (see $build_dir/configure.log)" >&2
    exit 77
  }
fi

prepare_workdir "$kl"
write_bench_ini "[parallel]" "recompute = $recompute" "[run]" "device = cuda" "precision = $precision"

kl_rates=() torch_rates=()
torch_note=""
for rep in $(seq "$reps"); do
  "$kl" train --config "$work/bench.ini" >"$work/kl.log" 2>&1 || { cat "$work/kl.log" >&2; exit 1; }
  rate=$(run_tokens_per_s)
  kl_rates+=("$rate")
  status=0
  out=$("$python" bench/torch_train_gpu.py --layers "$layers" --d_model "$d_model" --heads "$heads" \
        --seq_len "$seq_len" --batch "$batch" --micro_batch "$micro_batch" --vocab "$vocab" --steps "$steps" \
        --precision "$precision" --recompute "$recompute" 2>"$work/torch.err") || status=$?
  if [ "$status" = 0 ]; then
    torch_rates+=("$(sed 's/.*"tokens_per_s": \([^,}]*\).*/\1/' <<<"$out")")
    printf 'rep %d: kilolayer %.0f tok/s, pytorch %.0f tok/s\n' "$rep" "$rate" "${torch_rates[-1]}"
  else
    torch_note=$(cat "$work/torch.err")
    printf 'rep %d: kilolayer %.0f tok/s, pytorch not run\n' "$rep" "$rate"
  fi
done
kl=$(printf '%s\n' "${kl_rates[@]}" | median)
pt=$( ((${#torch_rates[@]})) && printf '%s\n' "${torch_rates[@]}" | median || echo 0)
awk -v kl="$kl" -v pt="$pt" -v L="$layers" -v d="$d_model" -v T="$seq_len" -v V="$vocab" -v B="$batch" \
    -v peak="$peak_tflops" -v gpu="$gpu" -v prec="$precision" 'BEGIN {
  n = L * (12 * d * d + 13 * d) + V * d + T * d + 2 * d   # tied head
  flops = 6 * n + 12 * L * d * T
  printf "model: L=%d d=%d T=%d batch=%d, N=%d parameters, %.4g FLOPs/token, %s on %s\n", L, d, T, B, n, flops, prec, gpu
  printf "kilolayer: %9.0f tok/s  MFU %5.1f%% of %g TFLOP/s\n", kl, 100 * kl * flops / (peak * 1e12), peak
  if (pt > 0) {
    printf "pytorch:   %9.0f tok/s  MFU %5.1f%%\n", pt, 100 * pt * flops / (peak * 1e12)
    printf "ratio kilolayer/pytorch: %.2f\n", kl / pt
  }
}'
if [ -n "$torch_note" ]; then echo "pytorch: $torch_note"; fi
