#!/usr/bin/env bash
# The learning-rate-transfer study: does the best learning rate found at a small depth stay best at
# large depth? Pre-norm nets of every depth x learning rate x depth parametrisation
# (model.depth_scaling, base depth L0 = the smallest depth), each trained on the byte-level corpus
# for the same tokens, through the study harness (launch/study.sh, tools/study/), then
# tools/study/lr_sweep.py:
#   <out>/lr_sweep.md, lr_sweep.csv  final validation loss at every (parametrisation, depth, lr); the
#                                    best lr per depth, how far it moves, what the smallest depth's
#                                    best lr costs at each depth
#   <out>/loss_vs_lr.png             loss against lr, one curve per depth, one panel per parametrisation
#   <out>/coord_check.png, .csv      per-layer stream RMS, branch RMS and update/weight ratio at step
#                                    --coord_step (diagnostics.h5), against l / L, at the middle lr
#   <out>/sweep/                     the harness's study.csv, study.md and every run directory
#
#   launch/transfer_study.sh [--lrs "0.0003 0.001 0.003 0.01 0.03"] [--layers "8 32 128"]
#                            [--scalings "standard depth_mup completep"] [--d_model 32] [--steps 250]
#                            [--coord_step 10] [--extra ""] [--out runs/transfer_study]
# --extra: more --section.key=value settings for every run (e.g. "--model.residual=layerscale").
# About 20-40 minutes on 2 shared cores with the defaults (45 runs of 128k tokens: 250 steps of 8 x 64).
set -euo pipefail
cd "$(dirname "$0")/.."
lrs="0.0003 0.001 0.003 0.01 0.03" layers="8 32 128" scalings="standard depth_mup completep" d_model=32
steps=250 coord_step=10 extra="" out=runs/transfer_study
source bench/common.sh
source launch/lib.sh
parse_options "lrs layers scalings d_model steps coord_step extra out" "$@"
[ -n "${KL_BIN:-}" ] || [ -x build/kilolayer ] || ./launch/build.sh >/dev/null  # KL_BIN: another binary
./launch/corpus.sh
mkdir -p "$out"
base=$(printf '%s\n' $layers | sort -n | head -1)
# The learning rate and its cosine floor (a tenth of it) vary together.
lr_axis=$(for lr in $lrs; do printf '%s:%s,' "$lr" "$(awk -v l="$lr" 'BEGIN {print l / 10}')"; done)
kl_corpus_ini "$out/base.ini" model.d_model="$d_model" model.residual=prenorm model.base_layers="$base" \
  train.steps="$steps" train.warmup=$((steps / 10)) run.diag_every="$coord_step"
# Diverged points are recorded (exit status 1 from the harness), not fatal.
# shellcheck disable=SC2086
launch/study.sh --config "$out/base.ini" --grid model.depth_scaling="$(echo $scalings | tr ' ' ,)" \
  --grid model.layers="$(echo $layers | tr ' ' ,)" --grid train.lr+train.min_lr="${lr_axis%,}" \
  --warmup 1 --no-plots --peak-gflops 200 --out "$out/sweep" $extra || true
/usr/bin/python3 tools/study/lr_sweep.py "$out/sweep/study.csv" "$out" --panel model.depth_scaling \
  --curve model.layers --coord-step "$coord_step" \
  --title "pre-norm, d_model $d_model, $steps steps of 8 x 64 tokens, L0 = $base ($(date +%F))"
