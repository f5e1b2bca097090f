#!/usr/bin/env bash
# The depth study made fair: every residual variant at its own best learning rate and warmup.
#   1. At the smallest depth, a sweep of lr x warmup per variant (tools/study/lr_sweep.py picks the
#      best pair): <out>/small/.
#   2. That pair carried to every larger depth, with the lr a factor --spread below and above it, so
#      that the table shows whether the best lr stayed put or moved with depth: <out>/deep/.
# Each point runs through the study harness (launch/study.sh) on the byte-level corpus, all for the
# same tokens. Writes <out>/small/{lr_sweep.md, loss_vs_lr.png, best.json} (panels: variants, curves:
# warmup) and <out>/deep/{lr_sweep.md, loss_vs_lr.png} (panels: variants, curves: depth), and
# <out>/summary.md: per variant and depth, the best loss found and its lr, against the unigram level.
#
#   launch/fair_depth_study.sh [--variants "plain postnorm prenorm rezero deepnorm"] [--small 8]
#                              [--layers "32 128"] [--lrs "0.0001 0.0003 0.001 0.003 0.01"]
#                              [--warmups "25 100"] [--spread 3] [--d_model 32] [--steps 250]
#                              [--out runs/fair_depth_study]
# About 20-30 minutes on 2 shared cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
variants="plain postnorm prenorm rezero deepnorm" small=8 layers="32 128" lrs="0.0001 0.0003 0.001 0.003 0.01"
warmups="25 100" spread=3 d_model=32 steps=250 out=runs/fair_depth_study
source bench/common.sh
source launch/lib.sh
parse_options "variants small layers lrs warmups spread d_model steps out" "$@"
[ -n "${KL_BIN:-}" ] || [ -x build/kilolayer ] || ./launch/build.sh >/dev/null  # KL_BIN: another binary
./launch/corpus.sh
mkdir -p "$out"
commas() { echo "$*" | tr ' ' ,; }
lr_axis() { for lr in "$@"; do printf '%s:%s,' "$lr" "$(awk -v l="$lr" 'BEGIN {print l / 10}')"; done; }
kl_corpus_ini "$out/base.ini" model.d_model="$d_model" train.steps="$steps"
study() { launch/study.sh --config "$out/base.ini" --warmup 1 --no-plots --peak-gflops 200 "$@" || true; }
date=$(date +%F)
all_lrs=$(lr_axis $lrs)
study --grid model.residual="$(commas $variants)" --grid train.warmup="$(commas $warmups)" \
  --grid train.lr+train.min_lr="${all_lrs%,}" --model.layers="$small" --out "$out/small/sweep"
/usr/bin/python3 tools/study/lr_sweep.py "$out/small/sweep/study.csv" "$out/small" --panel model.residual \
  --curve train.warmup --title "$small layers: lr x warmup per variant, d_model $d_model, $steps steps ($date)"
# Stage 2: each variant's best (lr, warmup), and lr / spread, lr x spread, at the larger depths.
rm -rf "$out/deep" && mkdir -p "$out/deep"
for variant in $variants; do
  read -r lr warmup < <(/usr/bin/python3 -c "import json,sys; b=json.load(open(sys.argv[1])).get(sys.argv[2]); \
print(b['lr'], b['curve']) if b else print('0.001 25')" "$out/small/best.json" "$variant")
  three=$(awk -v l="$lr" -v s="$spread" 'BEGIN {printf "%g %g %g", l / s, l, l * s}')
  axis=$(lr_axis $three)
  study --grid model.layers="$(commas $layers)" --grid train.lr+train.min_lr="${axis%,}" \
    --model.residual="$variant" --train.warmup="$warmup" --out "$out/deep/$variant"
done
/usr/bin/python3 - "$out" $variants <<'PY'
import csv, sys
out, variants = sys.argv[1], sys.argv[2:]
rows = []
for v in variants:
    with open(f"{out}/deep/{v}/study.csv") as f:
        for r in csv.DictReader(f):
            r["grid:model.residual"] = v
            rows.append(r)
columns = list(rows[0].keys())
with open(f"{out}/deep/study.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
PY
/usr/bin/python3 tools/study/lr_sweep.py "$out/deep/study.csv" "$out/deep" --panel model.residual \
  --curve model.layers --title "each variant's best (lr, warmup) at $small layers, x/ $spread, deeper ($date)"
/usr/bin/python3 - "$out" "$small" $variants <<'PY'
import json, sys, csv
out, small, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
best_small = json.load(open(f"{out}/small/best.json"))
lines = ["| variant | layers | best val loss | at lr | warmup | lr moved from the small depth's |", "|---|---|---|---|---|---|"]
for v in variants:
    b = best_small.get(v)
    if b:
        lines.append(f"| {v} | {small} | {b['loss']:.4f} | {b['lr']:g} | {b['curve']} | - |")
    with open(f"{out}/deep/lr_sweep.csv") as f:
        for r in csv.DictReader(f):
            if r["model.residual"] != v or not r["best_lr"]:
                continue
            moved = float(r["best_lr"]) / b["lr"] if b else None
            lines.append(f"| {v} | {r['model.layers']} | {float(r['best_loss']):.4f} | {float(r['best_lr']):g} | "
                         f"{b['curve'] if b else '-'} | x{moved:g} |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
