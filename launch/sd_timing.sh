#!/usr/bin/env bash
# Stochastic depth that saves compute: step time of a deep pre-norm net with linear-decay drop
# probability p_l = p_L (l + 1) / L against the same net without, through the study harness, the
# two runs interleaved in --repeat rounds (a shared machine's drifts fall on both), medians over the
# steps after the warm-up and over the rounds. A dropped block is skipped, not computed and zeroed
# (models/block_impl.h), so a step should take about (1 - mean p_l) of the blocks' time:
# 1 - p_L (L + 1) / (2L) (0.748 at p_L = 0.5, L = 128) plus what does not depend on depth.
#   launch/sd_timing.sh [--layers 128] [--p_last 0.5] [--d_model 64] [--steps 12] [--repeat 3]
#                       [--out runs/sd_timing]
# Writes <out>/study.csv, study.md and <out>/ratio.txt. About 5-10 minutes on 2 shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=128 p_last=0.5 d_model=64 steps=12 repeat=3 out=runs/sd_timing
source bench/common.sh
source launch/lib.sh
parse_options "layers p_last d_model steps repeat out" "$@"
[ -n "${KL_BIN:-}" ] || [ -x build/kilolayer ] || ./launch/build.sh >/dev/null  # KL_BIN: another binary
./launch/corpus.sh
mkdir -p "$out"
kl_corpus_ini "$out/base.ini" model.layers="$layers" model.d_model="$d_model" train.steps="$steps" \
  train.eval_batches=1
launch/study.sh --config "$out/base.ini" --grid model.stochastic_depth="0,$p_last" --warmup 2 \
  --repeat "$repeat" --no-plots --peak-gflops 200 --out "$out"
/usr/bin/python3 - "$out" "$layers" "$p_last" <<'PY' | tee "$out/ratio.txt"
import csv, glob, json, os, statistics, sys
out, L, p = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = {r["grid:model.stochastic_depth"]: r for r in csv.DictReader(open(f"{out}/study.csv"))}
off, on = (float(rows[k]["step_time_s"]) for k in ("0", sys.argv[3]))
# Per round, the two runs' median step times and their ratio.
# and the ratio of the whole runs' CPU seconds (rank_wrapper.py: startup and evaluation included),
# which another tenant's load disturbs less than wall time.
ratios, cpu_ratios = [], []
for round_dir in sorted(glob.glob(f"{out}/points/00_*/round*")):
    other = round_dir.replace("/00_", "/01_").replace("stochastic_depth0", f"stochastic_depth{sys.argv[3]}")
    times, cpu = [], []
    for d in (round_dir, other):
        steps = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
        times.append(statistics.median(s["step_time_s"] for s in steps if s["step"] > 2))
        cpu.append(float(open(os.path.join(d, "peak_rss", "rank_0")).read().split()[1]))
    ratios.append(times[1] / times[0])
    cpu_ratios.append(cpu[1] / cpu[0])
expected = 1 - p * (L + 1) / (2 * L)
print(f"{L} layers, p_L = {p}: step {on:.3f} s with drop, {off:.3f} s without: ratio {on / off:.3f}; "
      f"per round {', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f}); "
      f"CPU seconds per round {', '.join(f'{r:.3f}' for r in cpu_ratios)} "
      f"(median {statistics.median(cpu_ratios):.3f}); blocks kept on average {expected:.3f}")
PY
