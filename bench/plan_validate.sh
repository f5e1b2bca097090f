#!/usr/bin/env bash
# kilolayer plan against measurement on this machine: calibrates the bench model's block
# (`kilolayer plan --calibrate`, one thread), runs the layouts below through the study harness
# (launch/study.sh: pp 1, pp 2 under each schedule, dp 2, pp 4; one thread a rank, the same
# micro-batches per replica), predicts every CSV row with `kilolayer plan --evaluate` from the
# calibration alone, and prints predicted against measured with the errors:
#   step time (median over the steps after the warm-up), relative error;
#   bubble: the trainer's measured one (mean over stages of the time blocked on point-to-point /
#     step time) against the simulation's same quantity (p2p_wait_share), absolute error;
#   activation memory per stage (MiB, the trainer's stage_activation_mb), relative error;
#   core/rank: the CPU time the run's ranks got per rank and second of wall time (the study's
#     cpu_share x cores / ranks): 1 when each rank had a core to itself.
# Rows whose ranks outnumber the cores are marked: their ranks take turns on a core, which the
# model does not know.
# On a shared machine other jobs' load slows the calibration and the runs by turns, never speeds
# them up: the sweep runs --rounds times, each round after a calibration (and one more after the
# last), and the table compares the fastest of each, the least disturbed: per cost the smallest
# of the calibrations (the largest copy bandwidth), per point the round with the smallest median
# step time (its bubble with it). --wait_quiet S waits up to S s for the 1-minute load average to
# fall below 1 before starting. The load average is printed with the table.
# --study DIR predicts an existing study's rows instead (DIR/study.csv and study.json, as
# launch/study.sh writes them, e.g. docs/study): its config and overrides are calibrated here
# (--rounds + 1 times, the fastest kept), nothing is run.
#   bench/plan_validate.sh [--layers 16] [--d_model 128] [--micro 8] [--steps 12] [--rounds 2]
#                          [--wait_quiet 0] [--out DIR] [--study DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=16 d_model=128 micro=8 steps=12 rounds=2 out="" wait_quiet=0 study=""
source bench/common.sh
parse_options "layers d_model micro steps rounds out wait_quiet study" "$@"
for ((waited = 0; waited < wait_quiet; waited += 10)); do
  awk '{exit !($1 < 1)}' /proc/loadavg && break
  sleep 10
done
prepare_workdir
[ -n "$out" ] || out=$work/out
mkdir -p "$out"
heads=2 seq_len=128 vocab=256 batch=$micro micro_batch=1
write_bench_ini "[run]" "threads = 1"
cp "$work/bench.ini" "$out/bench.ini"
bin=build/kilolayer
config_args=(--config "$work/bench.ini")
if [ -n "$study" ]; then
  # The study's config and overrides, as plan's arguments, one a line.
  mapfile -t config_args < <(python3 -c '
import json, sys
info = json.load(open(sys.argv[1] + "/study.json"))
command = info["command"]
print("--config"); print(command[command.index("--config") + 1])
for key, value in info["overrides"].items(): print(f"--{key}={value}")' "$study")
fi

calibrate() { "$bin" plan "${config_args[@]}" --calibrate --repeats 20 --out "$out/calibration.$1.txt" >&2; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds: a calibration, then the sweep once; a last calibration after the last round.
for ((round = 1; round <= rounds; round++)); do
  calibrate "$round"
  [ -z "$study" ] || continue
  KL_BIN=$PWD/$bin launch/study.sh --config "$work/bench.ini" --no-plots --warmup 2 --out "$out/study.$round" \
    --grid "parallel.dp+parallel.pp+parallel.schedule+parallel.virtual=1:1:1f1b:1,1:2:1f1b:1,1:2:gpipe:1,1:2:zb1:1,1:2:interleaved:2,2:1:1f1b:1,1:4:1f1b:1" \
    --grid "micro_batches=$micro" --run.threads=1 --peak-gflops 100 -- --bind-to none >&2 || true
done
calibrate $((rounds + 1))
# Each cost the smallest of the calibrations (the shape keys agree), the bandwidth the largest.
python3 - "$out" >"$out/calibration.txt" <<'PY'
import glob, sys
files = [open(f).read().splitlines() for f in sorted(glob.glob(f"{sys.argv[1]}/calibration.[0-9]*.txt"))]
for i, line in enumerate(files[0]):
    if line.startswith("#") or " = " not in line:
        continue
    key = line.split(" = ")[0]
    values = [float(f[i].split(" = ")[1]) for f in files]
    value = max(values) if key == "copy_bytes_per_s" else min(values)
    shape = key in ("d_model", "heads", "d_ff", "seq_len", "vocab", "micro_batch", "threads")
    print(f"{key} = {int(value)}" if shape else f"{key} = {value:.6g}")
PY
# This host's links for the model: the memcpy bandwidth the calibration measured (MPI moves
# messages through shared memory), all ranks on one "node"; the CPU backend's attention memory,
# which the runs measure (--backend cpu).
copy_gbps=$(awk '$1 == "copy_bytes_per_s" {print $3 / 1e9}' "$out/calibration.txt")
hw=(--backend cpu --gpu-memory 1000 --peak-tflops 1 --intra-gbps "$copy_gbps" --inter-gbps "$copy_gbps" --gpus-per-node 8
    --latency-us 5)

printf 'calibration (fastest of %d): %s\n' $((rounds + 1)) "$(grep -v '^#' "$out/calibration.txt" | tr '\n' ' ')"
printf 'load average (1, 5, 15 min) before: %s, after: %s; %d cores\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
if [ -n "$study" ]; then
  csvs=$study/study.csv
  printf 'rows: %s (measured %s)\n' "$csvs" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["started"])' "$study/study.json")"
else
  csvs=$(for ((round = 1; round <= rounds; round++)); do printf '%s:' "$out/study.$round/study.csv"; done)
fi
KL_CSVS=$csvs KL_CONFIG_ARGS=$(printf '%s\n' "${config_args[@]}") \
python3 - "$bin" "$out/calibration.txt" "${hw[@]}" <<'PY'
import csv, os, subprocess, sys
binary, calibration, hw = sys.argv[1], sys.argv[2], sys.argv[3:]
config_args = os.environ["KL_CONFIG_ARGS"].splitlines()
# Per point: the row of the round with the smallest step time.
by_round = [list(csv.DictReader(open(path))) for path in os.environ["KL_CSVS"].split(":") if path]
rows = []
for i, row in enumerate(by_round[0]):
    ok = [r[i] for r in by_round if r[i]["status"] == "ok"]
    rows.append(min(ok, key=lambda r: float(r["step_time_s"])) if ok else row)
print(f"{'layout':<26} {'ranks':>5} {'step_s meas':>11} {'pred':>8} {'err':>7}  {'bubble meas':>11} {'pred':>7} {'err':>7}"
      f"  {'act MiB meas':>20} {'pred':>20} {'err':>6} {'core/rank':>9}  note")
for row in rows:
    if row["status"] != "ok":
        print(f"{row['point']}: {row['status']} {row['error']}")
        continue
    layout = [f"--parallel.dp={row['dp']}", f"--parallel.pp={row['pp']}", f"--parallel.schedule={row['schedule']}",
              f"--parallel.virtual={row['virtual']}", f"--train.global_batch={row['global_batch']}"]
    text = subprocess.run([binary, "plan", *config_args, "--evaluate", "--calibration", calibration, *hw, *layout],
                          check=True, capture_output=True, text=True).stdout
    pred = dict(kv.split("=", 1) for kv in text.split("prediction: ")[1].split())
    step, step_p = float(row["step_time_s"]), float(pred["step_time_s"])
    bubble, bubble_p = float(row["bubble"] or 0), float(pred["p2p_wait_share"])
    act = [float(x) for x in row["activation_mb_stages"].split(";") if x] if row["activation_mb_stages"] else []
    act_p = [float(x) for x in pred["stage_activation_mb"].split(",")]
    if not act:  # pp = 1: the trainer reports no per-stage activations
        act_text, act_pred, act_err = "-", "/".join(f"{x:.1f}" for x in act_p), "-"
    else:
        act_text = "/".join(f"{x:.1f}" for x in act)
        act_pred = "/".join(f"{x:.1f}" for x in act_p)
        act_err = f"{max(abs(p / m - 1) for p, m in zip(act_p, act)):.1%}"
    name = f"dp{row['dp']} pp{row['pp']} m{row['micro_batches']} {row['schedule']}" + (f" v{row['virtual']}" if row["virtual"] != "1" else "")
    note = "OVERSUBSCRIBED: ranks > cores" if row["oversubscribed"] == "1" else ""
    # The CPU time the ranks got, per rank, in cores: 1 when each had a core to itself (MPI's
    # waits spin, so they count); less when other jobs took turns on the cores.
    core_share = float(row["cpu_share"]) * int(row["cores"]) / int(row["ranks"])
    print(f"{name:<26} {row['ranks']:>5} {step:>11.4f} {step_p:>8.4f} {step_p / step - 1:>+7.1%}  {bubble:>11.3f} "
          f"{bubble_p:>7.3f} {bubble_p - bubble:>+7.3f}  {act_text:>20} {act_pred:>20} {act_err:>6} {core_share:>9.2f}  {note}")
PY
