#!/usr/bin/env bash
# launch/study.sh (tools/study/) and tools/study/plot.py on a tiny model under real mpirun; the
# theoretical bubble, which the harness takes from the trainer's metrics.jsonl, is checked here
# against the formulas written out independently:
#  1. a 2x2 sweep (--grid parallel.pp=1,2 x micro_batches=1,2): every CSV column, a row per point,
#     all ran, the theoretical bubble equals (p-1)/(m+p-1), global_batch = m, per-rank memory for
#     every rank, MFU = model GFLOP/s / the measured sgemm peak; the throughput and bubble plots are
#     valid PNGs and the memory plot is reported skipped;
#  2. a grid file (micro_batches 1,2 x layers 4,8 at pp 2, interleaved, virtual 2): the m = 1 points
#     fail (interleaved needs a multiple of pp), come first, are recorded with the error and no
#     theoretical bubble (no metrics), the sweep goes on and exits 1; interleaved's formula
#     (p-1)/(v m + p-1); the memory plot is written;
#  3. gpipe, zb1 and interleaved (v 2) as linked keys schedule+virtual at pp 2, m = 2 given as an
#     override, with --peak-gflops and --repeat 2: their formulas, MFU, two rounds.
#   tests/study_harness.sh BIN
set -u
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/../lib/common.sh"

make_shards "$bin" || fail "data command"
write_ini "$work/tiny.ini" model.layers=4 model.seq_len=16 model.dropout=0.0 train.steps=4 \
  train.global_batch= train.micro_batch=1 train.eval_every=0 train.eval_batches=1 checkpoint.dir= run.dir=
study() { KL_BIN=$bin "$root/launch/study.sh" --config "$work/tiny.ini" --warmup 1 "$@"; }

# check.py CSV ROWS EXPR...: every column, ROWS rows; each EXPR (Python, over `rows`, a list of
# dicts with numbers converted) must hold.
cat >"$work/check.py" <<'PY'
import csv, sys
FIXED = ["point", "status", "error", "dp", "pp", "ranks", "threads", "cores", "oversubscribed", "schedule",
         "virtual", "micro_batch", "micro_batches", "global_batch", "layers", "d_model", "seq_len", "params",
         "steps", "measured_steps", "rounds", "tokens_per_s", "step_time_s", "bubble", "bubble_theory", "comm_wait_s",
         "p2p_wait_s", "peak_rss_mb_max", "peak_rss_mb_ranks", "activation_mb_stages", "flops_per_token",
         "model_gflops", "peak_gflops", "peak_source", "mfu", "wall_s", "cpu_share", "final_loss", "val_loss",
         "diverged_step", "run_dir"]
path, count, grid = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
header = next(csv.reader(open(path)))
want = FIXED[:3] + ["grid:" + g for g in grid] + FIXED[3:]
assert header == want, f"columns {header}, wanted {want}"
def value(text):
    try:
        return float(text)
    except ValueError:
        return text
rows = [{k: value(v) for k, v in r.items()} for r in csv.DictReader(open(path))]
assert len(rows) == count, f"{len(rows)} rows, wanted {count}"
close = lambda a, b: isinstance(a, float) and abs(a - b) <= 1e-5 * max(1.0, abs(b))
for expr in sys.argv[4:]:
    assert eval(expr), f"does not hold: {expr}\nrows: {rows}"
PY
check() { /usr/bin/python3 "$work/check.py" "$@" || fail "$1"; }
png() {
  [ -s "$1" ] || fail "$1 missing or empty"
  [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"
}

# 1. 2 x 2 over --grid, all points run.
out=$work/s1
study --grid parallel.pp=1,2 --grid micro_batches=1,2 --out "$out" >"$work/s1.log" 2>&1
status=$?
[ "$status" -eq 0 ] || { cat "$work/s1.log"; fail "sweep 1 exit status $status"; }
check "$out/study.csv" 4 parallel.pp,micro_batches \
  "all(r['status'] == 'ok' and r['error'] == '' for r in rows)" \
  "[(r['grid:parallel.pp'], r['grid:micro_batches']) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]" \
  "all(r['pp'] == r['grid:parallel.pp'] and r['micro_batches'] == r['grid:micro_batches'] for r in rows)" \
  "all(r['ranks'] == r['pp'] and r['global_batch'] == r['micro_batches'] and r['threads'] == 1 for r in rows)" \
  "all(close(r['bubble_theory'], (r['pp'] - 1) / (r['micro_batches'] + r['pp'] - 1)) for r in rows)" \
  "all(r['tokens_per_s'] > 0 and r['step_time_s'] > 0 and r['measured_steps'] == 3 and r['rounds'] == 1 for r in rows)" \
  "all(0 <= r['bubble'] < 1 for r in rows) and all(r['bubble'] == 0 for r in rows if r['pp'] == 1)" \
  "all(len(str(r['peak_rss_mb_ranks']).split(';')) == r['ranks'] and r['peak_rss_mb_max'] > 1 for r in rows)" \
  "all(r['flops_per_token'] == 6 * r['params'] + 12 * 4 * 16 * 16 for r in rows)" \
  "all(0 < r['cpu_share'] <= 1.05 for r in rows)" \
  "all(r['peak_gflops'] > 0 and r['peak_source'].startswith('sgemm') for r in rows)" \
  "all(close(r['mfu'], r['tokens_per_s'] * r['flops_per_token'] / 1e9 / r['peak_gflops']) for r in rows)"
png "$out/throughput_vs_ranks.png"
png "$out/bubble_vs_micro_batches.png"
[ ! -e "$out/memory_vs_layers.png" ] || fail "memory_vs_layers.png written though layers does not vary"
grep -q 'skipped memory_vs_layers.png' "$work/s1.log" || fail "the skipped plot is not reported"
[ -s "$out/study.md" ] && [ -s "$out/study.json" ] || fail "study.md or study.json missing"

# 2. A grid file whose first two points fail.
cat >"$work/grid.ini" <<'INI'
[grid]
micro_batches = 1, 2
[model]
layers = 4, 8
[parallel]
pp = 2
schedule = interleaved
virtual = 2
INI
out=$work/s2
study --grid-file "$work/grid.ini" --out "$out" >"$work/s2.log" 2>&1
status=$?
[ "$status" -eq 1 ] || { cat "$work/s2.log"; fail "sweep 2 exit status $status, wanted 1 (some points failed)"; }
check "$out/study.csv" 4 micro_batches,model.layers \
  "[r['status'] for r in rows] == ['failed', 'failed', 'ok', 'ok']" \
  "all('exit 2' in r['error'] and 'interleaved' in r['error'] for r in rows[:2])" \
  "all(r['tokens_per_s'] == '' for r in rows[:2]) and all(r['tokens_per_s'] > 0 for r in rows[2:])" \
  "[r['layers'] for r in rows] == [4, 8, 4, 8] and all(r['schedule'] == 'interleaved' for r in rows)" \
  "all(r['bubble_theory'] == '' for r in rows[:2])" \
  "all(close(r['bubble_theory'], 1 / (2 * r['micro_batches'] + 1)) for r in rows[2:])"
grep -q 'FAILED' "$work/s2.log" || fail "the failed point is not reported"
png "$out/memory_vs_layers.png"
grep -q 'skipped throughput_vs_ranks.png' "$work/s2.log" || fail "the skipped throughput plot is not reported"

# 3. Linked keys (schedule with its virtual), micro-batches as an override, a given peak.
out=$work/s3
study --grid parallel.schedule+parallel.virtual=gpipe:1,zb1:1,interleaved:2 --micro_batches=2 --parallel.pp=2 \
  --peak-gflops 100 --repeat 2 --out "$out" >"$work/s3.log" 2>&1 || { cat "$work/s3.log"; fail "sweep 3"; }
check "$out/study.csv" 3 parallel.schedule,parallel.virtual \
  "[(r['schedule'], r['virtual']) for r in rows] == [('gpipe', 1), ('zb1', 1), ('interleaved', 2)]" \
  "all(r['status'] == 'ok' and r['micro_batches'] == 2 and r['pp'] == 2 for r in rows)" \
  "[round(r['bubble_theory'], 5) for r in rows] == [round(1 / 3, 5), round(1 / 7, 5), 0.2]" \
  "all(r['peak_gflops'] == 100 and r['peak_source'].startswith('user') for r in rows)" \
  "all(close(r['mfu'], r['model_gflops'] / 100) for r in rows)" \
  "all(r['rounds'] == 2 and r['error'] == '' for r in rows)"
for round in 1 2; do
  [ -s "$out/points/02_schedule-interleaved_virtual2/round$round/metrics.jsonl" ] || fail "round $round's run directory"
done

# A bad command line: exit 2 before any run.
KL_BIN=$bin "$root/launch/study.sh" --config "$work/tiny.ini" --grid parallel.nonsense=1,2 --out "$work/s4" \
  >"$work/s4.log" 2>&1
status=$?
[ "$status" -eq 2 ] && grep -q 'unknown config key' "$work/s4.log" || fail "unknown grid key: exit $status"
echo "study_harness: 3 sweeps, 11 points (14 runs), CSV, formulas, failures and plots checked"
