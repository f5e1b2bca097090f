#!/usr/bin/env bash
# The scaling-study harness: trains one config at every point of a grid (any config keys, e.g. dp,
# pp, schedule, micro-batches, virtual, layers), each under mpirun with ranks = dp x pp (through
# launch/mpirun.sh: cores / ranks threads a rank, --oversubscribe when ranks exceed cores,
# --allow-run-as-root as root), and writes one CSV row a point from the run's metrics.jsonl
# (medians over the steps after the warm-up) plus the plots of tools/plot_study.py.
#
#   launch/study.sh --config FILE [--grid KEY=V1,V2,...]... [--grid-file FILE] [--out DIR]
#                   [--warmup 2] [--repeat 1] [--peak-gflops X] [--point-timeout S] [--no-plots]
#                   [--section.key=value ...] [-- MPIRUN_ARGS...]
# e.g.
#   launch/study.sh --config configs/default.ini --grid parallel.pp=1,2,4 --grid micro_batches=1,2,4,8 \
#                   --model.layers=32 --train.micro_batch=1 --train.steps=30 --out runs/study1
#
# KEY: any config key (section.key), or dp, pp, schedule, virtual, layers (parallel.* / model.*), or
# micro_batches (alias train.micro_batches): micro-batches per step and replica, m. The config has no
# key for m (it is train.global_batch / (parallel.dp x train.micro_batch)), so the harness sets
# train.global_batch = m x dp x train.micro_batch: the micro-batch size stays fixed and the batch
# grows with m and dp (give the size with --train.micro_batch). Keys joined by '+' vary together,
# their values joined by ':' (--grid parallel.schedule+parallel.virtual=1f1b:1,interleaved:2), since
# interleaved alone takes virtual > 1. A grid file is INI: keys of a [grid] section as written, other
# sections' keys as section.key, values comma-separated. A key with one value, here or in --grid, is
# a fixed setting, not a CSV column. A later --grid/--grid-file entry replaces an earlier one for the
# same key. The points are the grid's product, in order, the last key varying fastest.
#
# mpirun gets --bind-to none unless MPIRUN_ARGS name a --bind-to (Open MPI binds each of one or two
# ranks to a single core, which its threads would then share).
#
# --warmup: metrics rows of the first steps left out of the medians. --repeat R: R rounds over the
# whole grid (so a shared machine's slow drifts spread over every point); a row then holds the
# medians over the rounds that ran. --point-timeout S: a run still going after S s is stopped
# (SIGTERM to launch/mpirun.sh, the ranks end after their step) and recorded as failed.
#
# Out: DIR/study.csv (one row a point; columns in README "Scaling studies"), DIR/study.md (the same
# as a table), DIR/study.json (the command, cores, peak), DIR/points/NAME/ (each run directory, its
# train.log and the per-rank peak memory; round1/, round2/... with --repeat), DIR/*.png. Every
# point runs with run.log_every = 1 and checkpoint.dir = none unless an override says otherwise. A point that fails (exit status, no
# metrics, timeout) is recorded with its error and the sweep goes on. Exit status: 0 when every
# point ran, 1 when some failed (the CSV is complete either way), 2 for a bad command line.
#
# The binary: $KL_BIN, else ${KL_BUILD_DIR:-build}/kilolayer (built when missing). MFU's
# denominator: --peak-gflops, else a 2048^3 sgemm with every core (kl_sgemm_peak beside the binary),
# measured once at the start; the CSV names it in peak_source.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # paths in the command line stay relative to the caller
bin=${KL_BIN:-$root/${KL_BUILD_DIR:-build}/kilolayer}
if [ -z "${KL_BIN:-}" ] && [ ! -x "$bin" ]; then
  (cd "$root" && ./launch/build.sh >/dev/null)
fi
export KL_STUDY_ROOT=$root KL_STUDY_BIN=$bin
exec /usr/bin/python3 - "$@" <<'PY'
import configparser
import csv
import itertools
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time

ROOT, BIN = os.environ["KL_STUDY_ROOT"], os.path.abspath(os.environ["KL_STUDY_BIN"])
ALIASES = {"dp": "parallel.dp", "pp": "parallel.pp", "schedule": "parallel.schedule",
           "virtual": "parallel.virtual", "layers": "model.layers", "micro_batches": "micro_batches",
           "train.micro_batches": "micro_batches", "m": "micro_batches"}
# Set for every point unless an override names the key: a metrics row per step, no checkpoint saves.
STUDY_DEFAULTS = {"run.log_every": "1", "checkpoint.dir": "none"}
FIXED_COLUMNS = [
    "point", "status", "error", "dp", "pp", "ranks", "threads", "cores", "oversubscribed", "schedule",
    "virtual", "micro_batch", "micro_batches", "global_batch", "layers", "d_model", "seq_len", "params",
    "steps", "measured_steps", "rounds", "tokens_per_s", "step_time_s", "bubble", "bubble_theory", "comm_wait_s",
    "p2p_wait_s", "peak_rss_mb_max", "peak_rss_mb_ranks", "activation_mb_stages", "flops_per_token",
    "model_gflops", "peak_gflops", "peak_source", "mfu", "wall_s", "cpu_share", "run_dir"]
RANK_WRAPPER = r'''#!/usr/bin/python3
# launch/study.sh's per-rank wrapper: runs the binary, forwards signals, and writes the child's peak
# resident memory (getrusage of the waited-for child, MiB) and its CPU time (user + system, s) to
# $KL_STUDY_RSS_DIR/rank_<rank>.
import os, signal, sys
binary = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.execv(binary, [binary] + sys.argv[2:])
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, lambda number, frame: os.kill(pid, number))
_, status, usage = os.wait4(pid, 0)
folder, rank = os.environ.get("KL_STUDY_RSS_DIR"), os.environ.get("OMPI_COMM_WORLD_RANK", "0")
if folder:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "rank_" + rank), "w") as f:
        f.write("%.1f %.3f\n" % (usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
'''


def usage_error(message):
    print(f"launch/study.sh: {message}", file=sys.stderr)
    sys.exit(2)


def canonical(key):
    key = key.strip()
    key = ALIASES.get(key, key)
    if key != "micro_batches" and "." not in key:
        usage_error(f"grid key '{key}': give section.key (or dp, pp, schedule, virtual, layers, micro_batches)")
    return key


def parse_args(argv):
    opts = {"config": None, "out": "runs/study", "warmup": 2, "peak_gflops": None, "point_timeout": 0.0,
            "plots": True, "repeat": 1}
    grid, overrides, mpirun_args = {}, {}, []
    i = 0

    def value(name):
        nonlocal i
        arg = argv[i]
        if "=" in arg:
            return arg.split("=", 1)[1]
        if i + 1 >= len(argv):
            usage_error(f"{name} needs a value")
        i += 1
        return argv[i]

    def add_axis(key, text):
        keys = tuple(canonical(k) for k in key.split("+"))  # linked keys: K1+K2=a:b,c:d
        values = [tuple(x.strip() for x in v.split(":")) for v in text.split(",") if v.strip()]
        if not values:
            usage_error(f"grid key {key}: no values")
        if any(len(v) != len(keys) for v in values):
            usage_error(f"grid key {key}: every value needs {len(keys)} part(s) joined by ':'")
        for old in [axis for axis in grid if set(axis) & set(keys)]:
            del grid[old]
        grid[keys] = values

    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            mpirun_args = argv[i + 1:]
            break
        elif name == "--config":
            opts["config"] = value(name)
        elif name == "--out":
            opts["out"] = value(name)
        elif name == "--warmup":
            opts["warmup"] = int(value(name))
        elif name == "--peak-gflops":
            opts["peak_gflops"] = float(value(name))
        elif name == "--point-timeout":
            opts["point_timeout"] = float(value(name))
        elif name == "--repeat":
            opts["repeat"] = int(value(name))
            if opts["repeat"] < 1:
                usage_error("--repeat needs a count >= 1")
        elif name == "--no-plots":
            opts["plots"] = False
        elif name == "--grid":
            text = value(name)  # --grid KEY=V,... or --grid=KEY=V,...
            if "=" not in text:
                usage_error(f"--grid KEY=V1,V2,...: got '{text}'")
            add_axis(*text.split("=", 1))
        elif name == "--grid-file":
            path = value(name)
            if not os.path.isfile(path):
                usage_error(f"--grid-file {path}: no such file")
            parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
            parser.optionxform = str
            text = open(path).read()
            parser.read_string(text if text.lstrip().startswith("[") else "[grid]\n" + text)
            for section in parser.sections():
                for key, values in parser.items(section):
                    add_axis(key if section == "grid" else f"{section}.{key}", values)
        elif arg.startswith("--") and ("." in name or name[2:] in ALIASES):
            if "=" in arg:
                key, val = arg[2:].split("=", 1)
            elif i + 1 < len(argv):
                key, val = arg[2:], argv[i + 1]
                i += 1
            else:
                usage_error(f"{arg} needs a value")
            overrides[canonical(key)] = val
        elif arg in ("-h", "--help"):
            print(open(os.path.join(ROOT, "launch/study.sh")).read().split("set -euo")[0])
            sys.exit(0)
        else:
            usage_error(f"unknown option {arg}")
        i += 1
    if not opts["config"] or not os.path.isfile(opts["config"]):
        usage_error("--config FILE (readable) is required")
    if not grid:
        usage_error("give at least one --grid KEY=V1,V2,... or --grid-file FILE")
    for axis in list(grid):  # one value: a fixed setting
        if len(grid[axis]) == 1:
            overrides.update(zip(axis, grid.pop(axis)[0]))
    if not grid:
        usage_error("every grid key has one value: nothing to sweep")
    for axis in grid:
        for key in axis:
            overrides.pop(key, None)  # the grid wins
    sources = [k for axis in grid for k in axis] + list(overrides)
    if "micro_batches" in sources and "train.global_batch" in sources:
        usage_error("micro_batches sets train.global_batch: give one of them")
    return opts, grid, overrides, mpirun_args


def defaults_from_help():
    text = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"--([a-z_]+\.[a-z_]+) arg \(=([^)]*)\)", text)}


def read_ini(path):
    values = {}
    section = ""
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif "=" in line:
            key, val = line.split("=", 1)
            values[f"{section}.{key.strip()}"] = val.strip()
    return values


def theoretical_bubble(schedule, p, m, v):
    """src/pipeline/schedule.cpp's theoretical_bubble (zb1's is ZB-H1's, reached when m >= p)."""
    if p <= 1:
        return 0.0
    if schedule in ("gpipe", "1f1b"):
        return (p - 1) / (m + p - 1)
    if schedule == "interleaved":
        return (p - 1) / (v * m + p - 1)
    if schedule == "zb1":
        return (p - 1) / (3 * m + p - 1)
    return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_peak(threads):
    tool = os.path.join(os.path.dirname(BIN), "kl_sgemm_peak")
    if not os.access(tool, os.X_OK):
        return None, "none: no kl_sgemm_peak beside the binary and no --peak-gflops"
    out = subprocess.run([tool, "2048", str(threads), "5"], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    try:
        return float(out.stdout.split()[0]), f"sgemm 2048^3 OpenBLAS {threads} threads (all cores)"
    except (ValueError, IndexError):
        return None, "none: kl_sgemm_peak failed"


def short_name(index, point):
    parts = []
    for key, val in point.items():
        label = {"micro_batches": "m"}.get(key, key.split(".")[-1])
        joined = f"{label}{val}" if re.fullmatch(r"[0-9.]+", val) else f"{label}-{val}"
        parts.append(re.sub(r"[^A-Za-z0-9_.-]", "_", joined))
    return f"{index:02d}_" + "_".join(parts)


def error_of(log_text, rc):
    lines = [l.strip() for l in log_text.splitlines() if l.strip()]
    picked = [l for l in lines if "error" in l.lower() and not l.startswith("launch/mpirun.sh:")]
    text = picked[0] if picked else (lines[-1] if lines else "no output")
    return f"exit {rc}: {text}"[:400]


def fmt(x, digits=6):
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def run_point(index, point, opts, overrides, mpirun_args, config_values, defaults, cores, peak, round_):
    name = short_name(index, point)
    run_dir = os.path.join(opts["out"], "points", name) + (f"/round{round_ + 1}" if opts["repeat"] > 1 else "")
    if os.path.isdir(run_dir):
        subprocess.run(["rm", "-rf", run_dir], check=True)
    os.makedirs(run_dir)
    settings = dict(STUDY_DEFAULTS)
    settings.update(overrides)
    settings.update(point)

    def resolved(key):
        if key in settings:
            return settings[key]
        return config_values.get(key, defaults.get(key))

    if "micro_batches" in settings:
        m = int(settings.pop("micro_batches"))
        settings["train.global_batch"] = str(m * int(resolved("parallel.dp")) * int(resolved("train.micro_batch")))
    settings["run.dir"] = run_dir
    args = [f"--{k}={v}" for k, v in settings.items()]
    command = [os.path.join(ROOT, "launch/mpirun.sh"), "--config", opts["config"]] + args
    if mpirun_args:
        command += ["--"] + mpirun_args
    env = dict(os.environ, KL_BIN=os.path.join(opts["out"], "rank_wrapper.sh"),
               KL_STUDY_RSS_DIR=os.path.join(run_dir, "peak_rss"))
    log_path = os.path.join(run_dir, "train.log")
    began = time.time()
    status, error = "ok", ""
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in command) + "\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=opts["point_timeout"] or None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # launch/mpirun.sh: the ranks stop after their step
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, status, error = None, "failed", f"timed out after {opts['point_timeout']:g} s"
    wall = time.time() - began
    log_text = open(log_path).read()
    if rc not in (0, None):
        status, error = "failed", error_of(log_text, rc)

    # The effective configuration: the run's config.ini, else what the point asked for.
    effective = dict(config_values)
    effective.update({k: v for k, v in defaults.items() if k not in effective})
    effective.update(settings)
    if os.path.isfile(os.path.join(run_dir, "config.ini")):
        effective.update(read_ini(os.path.join(run_dir, "config.ini")))

    def num(key, kind=int):
        try:
            return kind(effective[key])
        except (KeyError, ValueError):
            return None

    dp, pp, v = num("parallel.dp"), num("parallel.pp"), num("parallel.virtual")
    mb, gb = num("train.micro_batch"), num("train.global_batch")
    layers, d, T = num("model.layers"), num("model.d_model"), num("model.seq_len")
    schedule = effective.get("parallel.schedule")
    ranks = dp * pp if dp and pp else None
    m = gb // (dp * mb) if gb and dp and mb else None
    threads = num("run.threads")
    if ranks and not threads:  # launch/mpirun.sh's choice
        threads = max(1, cores // ranks)
    row = {c: None for c in FIXED_COLUMNS}
    row.update({"point": name, "dp": dp, "pp": pp, "ranks": ranks, "threads": threads, "cores": cores,
                "oversubscribed": (1 if ranks * threads > cores else 0) if ranks and threads else None,
                "schedule": schedule, "virtual": v, "micro_batch": mb, "micro_batches": m, "global_batch": gb,
                "layers": layers, "d_model": d, "seq_len": T, "steps": num("train.steps"),
                "bubble_theory": theoretical_bubble(schedule, pp, m, v) if pp and m and v else None,
                "peak_gflops": peak[0], "peak_source": peak[1], "wall_s": round(wall, 1),
                "run_dir": os.path.join(opts["out"], "points", name)})
    found = re.search(r"kilolayer: \d+ layers, d_model \d+, (\d+) parameters", log_text)
    if found:
        row["params"] = int(found.group(1))
        if layers and d and T:
            row["flops_per_token"] = 6 * row["params"] + 12 * layers * d * T

    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    rows = [json.loads(l) for l in open(metrics_path)] if os.path.isfile(metrics_path) else []
    steady = [r for r in rows if r.get("step", 0) > opts["warmup"]]
    if status == "ok" and not steady:
        status, error = "failed", f"no metrics rows after the {opts['warmup']} warm-up steps ({len(rows)} in all)"
    if steady:
        row["measured_steps"] = len(steady)
        row["tokens_per_s"] = median(r.get("tokens_per_s") for r in steady)
        row["step_time_s"] = median(r.get("step_time_s") for r in steady)
        row["comm_wait_s"] = median(r.get("comm_wait_s") for r in steady)
        if pp and pp > 1:
            row["bubble"] = median(r.get("bubble") for r in steady)
            row["p2p_wait_s"] = median(statistics.mean(r["stage_wait_s"]) for r in steady if r.get("stage_wait_s"))
            logged = steady[-1].get("bubble_theory")
            if logged is not None and row["bubble_theory"] is not None and abs(logged - row["bubble_theory"]) > 1e-9:
                print(f"warning: {name}: bubble_theory {logged} in metrics.jsonl, formula {row['bubble_theory']}",
                      file=sys.stderr)
            if steady[-1].get("stage_activation_mb"):
                row["activation_mb_stages"] = ";".join(f"{x:.1f}" for x in steady[-1]["stage_activation_mb"])
        else:
            row["bubble"], row["p2p_wait_s"] = 0.0, 0.0
        if row["flops_per_token"] and row["tokens_per_s"]:
            row["model_gflops"] = row["tokens_per_s"] * row["flops_per_token"] / 1e9
            if peak[0]:
                row["mfu"] = row["model_gflops"] / peak[0]
    rss_dir = os.path.join(run_dir, "peak_rss")
    if ranks and os.path.isdir(rss_dir):
        per_rank, cpu = [], []
        for r in range(ranks):
            path = os.path.join(rss_dir, f"rank_{r}")
            fields = open(path).read().split() if os.path.isfile(path) else []
            per_rank.append(float(fields[0]) if fields else None)
            cpu.append(float(fields[1]) if len(fields) > 1 else None)
        known = [x for x in per_rank if x is not None]
        if known:
            row["peak_rss_mb_max"] = max(known)
            row["peak_rss_mb_ranks"] = ";".join("" if x is None else f"{x:.1f}" for x in per_rank)
        if None not in cpu and wall > 0:  # what share of the machine the job got (others share it)
            row["cpu_share"] = round(sum(cpu) / (wall * cores), 3)
    row.update({f"grid:{k}": v for k, v in point.items()})
    if status != "ok":  # a failed point keeps its settings, the formula and its error only
        for column in FIXED_COLUMNS[FIXED_COLUMNS.index("steps") + 1:]:
            if column not in ("bubble_theory", "flops_per_token", "peak_gflops", "peak_source", "wall_s", "run_dir"):
                row[column] = None
    row["status"], row["error"] = status, error
    return row


def combine(rounds):
    """One row from a point's rounds: the medians of the measurements over the rounds that ran (the
    per-rank and per-stage lists from the last of them); failed when none ran."""
    good = [r for r in rounds if r["status"] == "ok"]
    row = dict(good[-1] if good else rounds[-1])
    row["rounds"] = len(good)
    if len(good) > 1:
        for column in ("tokens_per_s", "step_time_s", "bubble", "comm_wait_s", "p2p_wait_s", "peak_rss_mb_max",
                       "model_gflops", "mfu", "wall_s", "cpu_share"):
            row[column] = median(r[column] for r in good)
    failures = [r["error"] for r in rounds if r["status"] != "ok"]
    if good and failures:
        row["error"] = f"{len(failures)} of {len(rounds)} rounds failed, first: {failures[0]}"
    return row


def write_outputs(out, rows, grid_keys):
    columns = FIXED_COLUMNS[:3] + [f"grid:{k}" for k in grid_keys] + FIXED_COLUMNS[3:]
    path = os.path.join(out, "study.csv")
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row.get(c)) for c in columns])
    os.replace(path + ".tmp", path)
    shown = ["point", "status"] + [f"grid:{k}" for k in grid_keys] + [
        c for c in ("ranks", "threads", "micro_batches", "tokens_per_s", "step_time_s", "bubble", "bubble_theory",
                    "comm_wait_s", "peak_rss_mb_max", "mfu", "cpu_share") if c != "micro_batches" or c not in grid_keys]
    lines = ["| " + " | ".join(c.replace("grid:", "") for c in shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for c in shown:
            x = row.get(c)
            if c == "status" and row["status"] != "ok":
                x = f"failed: {row['error']}"
            cells.append(f"{x:.4g}" if isinstance(x, float) else ("" if x is None else str(x)).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    open(os.path.join(out, "study.md"), "w").write("\n".join(lines) + "\n")
    return path


def main():
    opts, grid, overrides, mpirun_args = parse_args(sys.argv[1:])
    if "--bind-to" not in mpirun_args:
        # Open MPI binds each of up to 2 ranks to one core, so one rank's threads would share a core.
        mpirun_args = ["--bind-to", "none"] + mpirun_args
    if not os.access(BIN, os.X_OK):
        usage_error(f"no binary at {BIN} (build it, or set KL_BIN)")
    defaults = defaults_from_help()
    keys = [k for axis in grid for k in axis]
    unknown = [k for k in keys + list(overrides) if k != "micro_batches" and defaults and k not in defaults]
    if unknown:
        usage_error(f"unknown config key(s): {', '.join(unknown)}")
    config_values = read_ini(opts["config"])
    cores = os.cpu_count() or 1
    os.makedirs(opts["out"], exist_ok=True)
    wrapper = os.path.join(opts["out"], "rank_wrapper.sh")
    with open(os.path.join(opts["out"], "rank_wrapper.py"), "w") as f:
        f.write(RANK_WRAPPER)
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec /usr/bin/python3 {shlex.quote(os.path.abspath(os.path.join(opts["out"], "rank_wrapper.py")))} '
                f'{shlex.quote(BIN)} "$@"\n')
    os.chmod(wrapper, 0o755)
    peak = (opts["peak_gflops"], "user (--peak-gflops)") if opts["peak_gflops"] else measure_peak(cores)
    axes = list(grid)
    points = [{k: v for axis, values in zip(axes, combo) for k, v in zip(axis, values)}
              for combo in itertools.product(*(grid[axis] for axis in axes))]
    json.dump({"command": ["launch/study.sh"] + sys.argv[1:], "binary": BIN, "cores": cores,
               "grid": {"+".join(a): [":".join(v) for v in vs] for a, vs in grid.items()}, "overrides": overrides, "mpirun_args": mpirun_args, "warmup_steps": opts["warmup"],
               "peak_gflops": peak[0], "peak_source": peak[1], "started": time.strftime("%Y-%m-%d %H:%M:%S")},
              open(os.path.join(opts["out"], "study.json"), "w"), indent=1)
    print(f"study: {len(points)} points over {', '.join('+'.join(a) + f' ({len(grid[a])})' for a in axes)}; "
          f"{cores} cores; peak {fmt(peak[0], 4) or '-'} GFLOP/s ({peak[1]})", flush=True)
    runs, start = [[] for _ in points], time.time()
    for round_ in range(opts["repeat"]):  # whole rounds, so slow drifts of a shared machine spread evenly
        for index, point in enumerate(points):
            row = run_point(index, point, opts, overrides, mpirun_args, config_values, defaults, cores, peak, round_)
            runs[index].append(row)
            rows = [combine(r) for r in runs if r]
            csv_path = write_outputs(opts["out"], rows, keys)
            desc = " ".join(f"{k}={v}" for k, v in point.items())
            desc = (f"round {round_ + 1}/{opts['repeat']} " if opts["repeat"] > 1 else "") + desc
            if row["status"] == "ok":
                print(f"[{index + 1}/{len(points)}] {desc}: {row['tokens_per_s']:.0f} tok/s, step {row['step_time_s']:.3f} s, "
                      f"bubble {row['bubble']:.3f} (theory {row['bubble_theory']:.3f}), peak {fmt(row['peak_rss_mb_max'], 4)} MiB, "
                      f"{row['wall_s']} s", flush=True)
            else:
                print(f"[{index + 1}/{len(points)}] {desc}: FAILED {row['error']}", flush=True)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"study: {len(rows) - failed} of {len(rows)} points ran, {time.time() - start:.0f} s; {csv_path}")
    if opts["plots"]:
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools/plot_study.py"), csv_path, opts["out"]],
                       stdin=subprocess.DEVNULL)
    sys.exit(1 if failed else 0)


main()
PY
