#!/usr/bin/env bash
# Is deeper better? Pre-norm nets of several depths at one width under a depth parametrisation
# (default CompleteP at L0 = --base, the transfer study's best lr), each trained
#   --budget compute: for the same training FLOPs (6N + 12 L d T per token, N the parameters):
#                     depth L gets steps = --steps x flops(--ref) / flops(L), so shallow nets see
#                     more tokens;
#   --budget tokens:  for the same tokens (--steps each).
# Through the study harness; writes <out>/study.csv and <out>/deeper.md (depth, parameters, steps,
# tokens, final validation and training loss) and <out>/loss_vs_depth.png.
#   launch/deeper_study.sh [--layers "2 4 8 16 32"] [--ref 32] [--steps 500] [--budget compute]
#                          [--scaling completep] [--base 8] [--lr 0.003] [--d_model 32]
#                          [--out runs/deeper_study]
# About 20-40 minutes on 2 shared cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
layers="2 4 8 16 32" ref=32 steps=500 budget=compute scaling=completep base=8 lr=0.003 d_model=32
out=runs/deeper_study
source bench/common.sh
source launch/lib.sh
parse_options "layers ref steps budget scaling base lr d_model out" "$@"
[ -n "${KL_BIN:-}" ] || [ -x build/kilolayer ] || ./launch/build.sh >/dev/null  # KL_BIN: another binary
./launch/corpus.sh
mkdir -p "$out"
# FLOPs per token of depth L (d_model d, 256 tokens, 64 positions, tied head, d_ff 4d): 6N + 12 L d T.
flops() { awk -v L="$1" -v d="$d_model" 'BEGIN {N = L * (12 * d * d + 13 * d) + (256 + 64) * d + 2 * d; print 6 * N + 12 * L * d * 64}'; }
axis=""
for L in $layers; do
  n=$steps
  [ "$budget" = compute ] && n=$(awk -v s="$steps" -v a="$(flops "$ref")" -v b="$(flops "$L")" 'BEGIN {printf "%d", s * a / b}')
  axis+="$L:$n:$((n / 10)),"
done
kl_corpus_ini "$out/base.ini" model.d_model="$d_model" model.residual=prenorm model.depth_scaling="$scaling" \
  model.base_layers="$base" train.lr="$lr" train.min_lr="$(awk -v l="$lr" 'BEGIN {print l / 10}')" \
  train.eval_batches=16
launch/study.sh --config "$out/base.ini" --grid model.layers+train.steps+train.warmup="${axis%,}" --warmup 1 \
  --no-plots --peak-gflops 200 --out "$out" || true
/usr/bin/python3 - "$out" "$budget" "$scaling" "$lr" "$(date +%F)" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out, budget, scaling, lr, date = sys.argv[1:]
rows = [r for r in csv.DictReader(open(f"{out}/study.csv"))]
lines = ["| layers | parameters | steps | tokens | final val loss | final train loss | status |", "|---|---|---|---|---|---|---|"]
xs, ys = [], []
for r in rows:
    L, steps = int(r["grid:model.layers"]), int(r["grid:train.steps"])
    val = float(r["val_loss"]) if r["val_loss"] else None
    train = float(r["final_loss"]) if r["final_loss"] else None
    cell = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines.append(f"| {L} | {r['params']} | {steps} | {steps * 512} | {cell(val)} | {cell(train)} | {r['status']} |")
    if val is not None:
        xs.append(L); ys.append(val)
open(f"{out}/deeper.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
plt.figure(figsize=(4.5, 3.4))
plt.plot(xs, ys, marker="o")
plt.xscale("log", base=2)
plt.xlabel("layers"); plt.ylabel("final validation loss (nats)")
plt.title(f"pre-norm, {scaling}, lr {lr}, equal {budget} ({date})", fontsize=8)
plt.grid(alpha=0.3); plt.tight_layout()
plt.savefig(f"{out}/loss_vs_depth.png", dpi=80)
PY
