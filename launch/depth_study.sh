#!/usr/bin/env bash
# The depth study: residual variants x depths at a small width, each trained on the byte-level corpus
# for the same number of tokens (single process, every core), then a table and plots:
#   <out>/table.md, table.csv   final validation loss, |dL/dx_0| / |dL/dx_L| at step 1 and at the
#                               end, divergence; <out>/grad_norm_vs_depth.png, loss_curves.png
#   launch/depth_study.sh [--variants "plain postnorm prenorm rezero deepnorm"] [--layers "8 32 128 512"]
#                         [--d_model 32] [--steps 250] [--lr 0.001] [--out runs/depth_study]
# About 30 minutes on 2 cores with the defaults (128k tokens per run: 250 steps of 8 x 64).
set -euo pipefail
cd "$(dirname "$0")/.."
variants="plain postnorm prenorm rezero deepnorm" layers="8 32 128 512" d_model=32 steps=250 lr=0.001
out=runs/depth_study
source bench/common.sh
parse_options "variants layers d_model steps lr out" "$@"
./launch/build.sh >/dev/null
./launch/corpus.sh
mkdir -p "$out"
start=$(date +%s)
for L in $layers; do
  for variant in $variants; do
    name="$variant-L$L"
    began=$(date +%s)
    # A run that diverges stops with exit 2 ("training diverged at step N"): recorded, not fatal.
    build/kilolayer train --config /dev/null --model.layers="$L" --model.d_model="$d_model" --model.heads=2 \
      --model.seq_len=64 --model.dropout=0 --model.residual="$variant" --train.steps="$steps" \
      --train.global_batch=8 --train.micro_batch=8 --train.lr="$lr" --train.min_lr="$(awk -v l="$lr" 'BEGIN {print l / 10}')" \
      --train.warmup=$((steps / 10)) --train.eval_every=0 --train.eval_batches=8 \
      --data.train=data/fortunes/train.bin --data.val=data/fortunes/val.bin --run.diag_every="$steps" \
      --run.log_every=1 --run.dir="$out/$name" --checkpoint.dir=none >"$out/$name.log" 2>&1 || true
    printf '%-16s %4ds  %s\n' "$name" $(( $(date +%s) - began )) "$(tail -1 "$out/$name.log")"
  done
done
echo "depth study: $(( $(date +%s) - start )) s of training"
/usr/bin/python3 tools/depth_study.py "$out" $variants -- $layers
