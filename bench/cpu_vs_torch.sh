#!/usr/bin/env bash
# Training throughput of kilolayer beside the same model in PyTorch, same machine, same threads, in
# one run (issue 16's fair benchmark). For each row (model shape and dropout) and each repetition it
# runs, one after the other:
#   kilolayer fp32, kilolayer bf16 (run.precision = bf16, where the CPU has avx512_bf16),
#   PyTorch fp32 and bf16 autocast, each in two formulations (bench/torch_train.py: the nanoGPT-style
#   model and nn.TransformerEncoderLayer(norm_first=True) with a causal mask).
# Every program keeps its best repetition (tokens/s: the median over the steps after the first), and
# the PyTorch peer of a precision is the faster formulation. All of it runs twice: with the
# machine's OPENBLAS_* variables as they are, and with them unset, for both programs alike; the
# sgemm peak (2048^3, same threads) through OpenBLAS and through oneDNN is measured under each.
# PyTorch's BLAS library is printed, and a reference BLAS is refused.
#
#   bench/cpu_vs_torch.sh [--rows "L:d:T:dropout ..."] [--threads 2] [--batch 8] [--heads 2]
#                         [--steps 6] [--reps 2] [--quick 0|1]
# Default rows: 128:128:128:0.1 128:128:128:0 128:256:128:0.1 128:128:512:0.1. --quick 1: one small
# row (8 layers), 3 steps, 1 repetition: a smoke test of the whole table (CI), not a measurement.
# Model FLOPs per token: 6 N + 12 L d T (N parameters).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="128:128:128:0.1 128:128:128:0 128:256:128:0.1 128:128:512:0.1"
heads=2 batch=8 threads=2 steps=6 reps=2 vocab=256 quick=0
source bench/common.sh
parse_options "rows threads batch heads steps reps quick" "$@"
if [ "$quick" = 1 ]; then
  rows="8:128:128:0.1" steps=3 reps=1
fi
started=$(date +%s)
prepare_workdir
[ -x build/kl_sgemm_peak ] || { echo "cpu_vs_torch: build/kl_sgemm_peak is missing (a build with KL_BLAS=ON)" >&2; exit 1; }

# bf16 where the CPU has avx512_bf16 (PyTorch's autocast, kilolayer's run.precision = bf16).
bf16=0
grep -qw avx512_bf16 /proc/cpuinfo && bf16=1
[ "$bf16" = 1 ] || echo "this CPU lacks avx512_bf16: fp32 rows only"
onednn_peak=1
build/kl_sgemm_peak 64 1 1 onednn >/dev/null 2>&1 || onednn_peak=0

# The OPENBLAS_* variables of this environment, and the two settings the table is measured under.
mapfile -t openblas_vars < <(env | sed -n 's/^\(OPENBLAS_[A-Za-z0-9_]*\)=.*/\1/p' | sort)
settings=(asis)
if [ ${#openblas_vars[@]} -gt 0 ]; then
  settings+=(unset)
else
  echo "no OPENBLAS_* variable is set: one setting only"
fi
describe_setting() {
  if [ "$1" = asis ]; then
    local shown=()
    for v in "${openblas_vars[@]}"; do shown+=("$v=${!v}"); done
    echo "OPENBLAS_* as set (${shown[*]:-none})"
  else
    echo "OPENBLAS_* unset"
  fi
}
# Runs a command under a setting.
under() {
  local setting=$1
  shift
  if [ "$setting" = unset ]; then
    local unset_args=()
    for v in "${openblas_vars[@]}"; do unset_args+=(-u "$v"); done
    env "${unset_args[@]}" "$@"
  else
    "$@"
  fi
}

# PyTorch's BLAS, from a one-layer run: printed, and refused when it is the reference BLAS.
torch_json() { sed -n 's/.*"'"$2"'": \(\[[^]]*\]\|[^,}]*\).*/\1/p' <<<"$1"; }
probe=$(/usr/bin/python3 bench/torch_train.py --layers 1 --steps 1 --threads "$threads")
blas=$(torch_json "$probe" blas)
echo "PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') loads: $blas"
if [[ "$blas" == *"/blas/libblas"* ]] || [[ "$blas" != *openblas* && "$blas" != *blis* && "$blas" != *mkl* ]]; then
  echo "cpu_vs_torch: PyTorch uses the reference BLAS ($blas), about 3x slower than OpenBLAS: install" \
       "libopenblas-openmp-dev (./launch/setup.sh) or point the libblas.so.3 alternative at OpenBLAS" \
       "(update-alternatives --config libblas.so.3-x86_64-linux-gnu)" >&2
  exit 1
fi

# best KEY VALUE: keeps the larger value of KEY in $work/best.
declare -A best
keep_best() { awk -v a="${best[$1]:-0}" -v b="$2" 'BEGIN { exit !(b > a) }' && best[$1]=$2 || true; }

programs=(kl_fp32 torch_gpt_fp32 torch_encoder_fp32)
[ "$bf16" = 1 ] && programs+=(kl_bf16 torch_gpt_bf16 torch_encoder_bf16)
params=0
for setting in "${settings[@]}"; do
  echo "== $(describe_setting "$setting")"
  for rep in $(seq "$reps"); do
    keep_best "$setting|peak_openblas" "$(under "$setting" build/kl_sgemm_peak 2048 "$threads" 3 openblas)"
    [ "$onednn_peak" = 0 ] || keep_best "$setting|peak_onednn" "$(under "$setting" build/kl_sgemm_peak 2048 "$threads" 3 onednn)"
    for row in $rows; do
      IFS=: read -r layers d_model seq_len dropout <<<"$row"
      line="rep $rep, L=$layers d=$d_model T=$seq_len dropout $dropout:"
      for program in "${programs[@]}"; do
        precision=${program##*_}
        if [[ $program == kl_* ]]; then
          write_bench_ini "[run]" "threads = $threads" "precision = $precision"
          under "$setting" build/kilolayer train --config "$work/bench.ini" >/dev/null
          rate=$(run_tokens_per_s)
        else
          model=${program#torch_}
          model=${model%_*}
          out=$(under "$setting" /usr/bin/python3 bench/torch_train.py --layers "$layers" --d_model "$d_model" \
                --heads "$heads" --seq_len "$seq_len" --batch "$batch" --vocab "$vocab" --steps "$steps" \
                --threads "$threads" --dropout "$dropout" --model "$model" --precision "$precision")
          rate=$(torch_json "$out" tokens_per_s)
          params=$(torch_json "$out" parameters)
          best["params|$row"]=$params
        fi
        keep_best "$setting|$row|$program" "$rate"
        line+=$(printf ' %s %.0f' "$program" "$rate")
      done
      echo "$line tok/s"
    done
  done
done

# The table: best repetition of each program, the faster PyTorch formulation as the peer.
echo
echo "threads $threads, batch $batch, heads $heads, $steps steps, best of $reps repetitions; tok/s (model GFLOP/s)"
printf '| setting | model | kilolayer fp32 | PyTorch fp32 | ratio | of sgemm (OpenBLAS / oneDNN) |'
[ "$bf16" = 1 ] && printf ' kilolayer bf16 | PyTorch bf16 autocast | ratio | bf16 / PyTorch fp32 |'
echo
printf '|---|---|---|---|---|---|'
[ "$bf16" = 1 ] && printf '%s' '---|---|---|---|'
echo
for setting in "${settings[@]}"; do
  for row in $rows; do
    IFS=: read -r layers d_model seq_len dropout <<<"$row"
    get() { echo "${best[$setting|$row|$1]:-0}"; }
    awk -v setting="$( [ "$setting" = asis ] && echo "as set" || echo "unset")" -v L="$layers" -v d="$d_model" \
        -v T="$seq_len" -v p="$dropout" -v n="${best[params|$row]}" -v bf16="$bf16" \
        -v kl="$(get kl_fp32)" -v gpt="$(get torch_gpt_fp32)" -v enc="$(get torch_encoder_fp32)" \
        -v kl16="$(get kl_bf16)" -v gpt16="$(get torch_gpt_bf16)" -v enc16="$(get torch_encoder_bf16)" \
        -v pob="${best[$setting|peak_openblas]}" -v pdn="${best[$setting|peak_onednn]:-0}" 'BEGIN {
      f = (6 * n + 12 * L * d * T) / 1e9
      pt = gpt > enc ? gpt : enc; ptn = gpt > enc ? "gpt" : "encoder"
      printf "| %s | L=%d d=%d T=%d p=%s | %.0f (%.1f) | %.0f %s (%.1f) | %.2fx | %.0f%% of %.0f / %.0f%% of %.0f |", \
        setting, L, d, T, p, kl, kl * f, pt, ptn, pt * f, kl / pt, 100 * kl * f / pob, pob, \
        (pdn > 0 ? 100 * kl * f / pdn : 0), pdn
      if (bf16 == 1) {
        pt16 = gpt16 > enc16 ? gpt16 : enc16; pt16n = gpt16 > enc16 ? "gpt" : "encoder"
        printf " %.0f (%.1f) | %.0f %s | %.2fx | %.2fx |", kl16, kl16 * f, pt16, pt16n, kl16 / pt16, kl16 / pt
      }
      printf "\n"
    }'
  done
done
echo "sgemm peaks (2048^3, $threads threads, GFLOP/s):$(for s in "${settings[@]}"; do
  printf ' %s: OpenBLAS %s, oneDNN %s;' "$s" "${best[$s|peak_openblas]}" "${best[$s|peak_onednn]:-n/a}"; done)"
echo "took $(( $(date +%s) - started )) s on $(nproc) cores (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
