"""The scaling-study harness: runs every point of a grid under launch/mpirun.sh and writes a row a point.

    PYTHONPATH=tools python3 -m study.harness ARGS...     (launch/study.sh ARGS..., which documents them)

$KL_STUDY_ROOT is the repository (else the one holding this package), $KL_STUDY_BIN the binary
(else $KL_BIN, else ROOT/build/kilolayer); launch/study.sh sets both. A row's measurements come from
the run's metrics.jsonl (medians over the steps after the warm-up), its memory and CPU time from
rank_wrapper.py, its settings from the run's config.ini. Exit status 0 when every point ran, 1 when
some failed, 2 for a bad command line.
"""
import dataclasses
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time

from study import grid as grids
from study import report
from study.grid import usage_error

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Set for every point unless an override names the key: a metrics row per step, no checkpoint saves.
STUDY_DEFAULTS = {"run.log_every": "1", "checkpoint.dir": "none"}
# Measurements a row of several rounds holds the median of (the rest come from the last good round).
ROUND_MEDIANS = ("tokens_per_s", "step_time_s", "bubble", "comm_wait_s", "p2p_wait_s", "peak_rss_mb_max",
                 "model_gflops", "mfu", "wall_s", "cpu_share")
# Columns a failed point keeps beyond its settings and its error.
KEPT_WHEN_FAILED = ("bubble_theory", "flops_per_token", "peak_gflops", "peak_source", "wall_s", "diverged_step",
                    "run_dir")


@dataclasses.dataclass
class Study:
    """What every point of one study shares."""
    root: str            # the repository (launch/mpirun.sh, launch/study.sh)
    binary: str          # the kilolayer binary, absolute
    opts: dict           # grid.parse_args's options
    overrides: dict      # {config key: value} for every point
    mpirun_args: list    # after --, with --bind-to none unless a --bind-to is given
    config_values: dict  # the config file's {section.key: value}
    defaults: dict       # the binary's defaults, {section.key: value} from its --help
    cores: int
    peak: tuple          # (GFLOP/s or None, where it comes from)


def locations():
    """(repository root, absolute binary path) from the environment (see the module's docstring)."""
    root = os.environ.get("KL_STUDY_ROOT") or os.path.dirname(os.path.dirname(PACKAGE_DIR))
    binary = os.environ.get("KL_STUDY_BIN") or os.environ.get("KL_BIN") or os.path.join(root, "build/kilolayer")
    return root, os.path.abspath(binary)


def defaults_from_help(binary):
    """The binary's config keys and defaults, {section.key: value}, read from its --help."""
    text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"--([a-z_]+\.[a-z_]+) arg \(=([^)]*)\)", text)}


def read_ini(path):
    """An INI file's {section.key: value} (no interpolation, comments # and ; on their own lines)."""
    values = {}
    section = ""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]").strip()
            elif "=" in line:
                key, val = line.split("=", 1)
                values[f"{section}.{key.strip()}"] = val.strip()
    return values


def median(values):
    """The median of the values that are not None, or None when there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_peak(binary, threads):
    """(GFLOP/s, source) of a 2048^3 sgemm on threads threads by kl_sgemm_peak beside the binary, or
    (None, why not)."""
    tool = os.path.join(os.path.dirname(binary), "kl_sgemm_peak")
    if not os.access(tool, os.X_OK):
        return None, "none: no kl_sgemm_peak beside the binary and no --peak-gflops"
    out = subprocess.run([tool, "2048", str(threads), "5"], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    try:
        return float(out.stdout.split()[0]), f"sgemm 2048^3 OpenBLAS {threads} threads (all cores)"
    except (ValueError, IndexError):
        return None, "none: kl_sgemm_peak failed"


def error_of(log_text, rc):
    """A failed run's error for the CSV: its exit status and the first log line naming an error (else
    its last line), at most 400 characters."""
    lines = [l.strip() for l in log_text.splitlines() if l.strip()]
    picked = [l for l in lines if "error" in l.lower() and not l.startswith("launch/mpirun.sh:")]
    text = picked[0] if picked else (lines[-1] if lines else "no output")
    return f"exit {rc}: {text}"[:400]


def write_rank_wrapper(out, binary):
    """OUT/rank_wrapper.sh, which runs rank_wrapper.py (beside this file) on the binary; returns its
    path, the KL_BIN launch/mpirun.sh gets."""
    wrapper = os.path.join(out, "rank_wrapper.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec /usr/bin/python3 {shlex.quote(os.path.join(PACKAGE_DIR, "rank_wrapper.py"))} '
                f'{shlex.quote(binary)} "$@"\n')
    os.chmod(wrapper, 0o755)
    return wrapper


def point_settings(study, point):
    """The point's command-line settings, {config key: value}: the study's defaults, the overrides,
    the point; micro_batches becomes train.global_batch = m x dp x train.micro_batch."""
    settings = dict(STUDY_DEFAULTS)
    settings.update(study.overrides)
    settings.update(point)

    def resolved(key):
        if key in settings:
            return settings[key]
        return study.config_values.get(key, study.defaults.get(key))

    if "micro_batches" in settings:
        m = int(settings.pop("micro_batches"))
        settings["train.global_batch"] = str(m * int(resolved("parallel.dp")) * int(resolved("train.micro_batch")))
    return settings


def launch(study, settings, run_dir):
    """Runs launch/mpirun.sh with settings (and run.dir = run_dir), its output to run_dir/train.log,
    stopped after --point-timeout; returns (exit status or None when timed out, error, wall seconds,
    the log's text)."""
    command = [os.path.join(study.root, "launch/mpirun.sh"), "--config", study.opts["config"]]
    command += [f"--{k}={v}" for k, v in settings.items()]
    if study.mpirun_args:
        command += ["--"] + study.mpirun_args
    env = dict(os.environ, KL_BIN=os.path.join(study.opts["out"], "rank_wrapper.sh"),
               KL_STUDY_RSS_DIR=os.path.join(run_dir, "peak_rss"))
    log_path = os.path.join(run_dir, "train.log")
    began = time.time()
    error = ""
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in command) + "\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=study.opts["point_timeout"] or None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # launch/mpirun.sh: the ranks stop after their step
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, error = None, f"timed out after {study.opts['point_timeout']:g} s"
    wall = time.time() - began
    with open(log_path, errors="replace") as f:  # a run's log is its own text: never fail on it
        log_text = f.read()
    return rc, error, wall, log_text


def read_metrics(run_dir):
    """The rows of run_dir/metrics.jsonl (none when it is missing)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f]


def read_rank_usage(run_dir, ranks):
    """([peak MiB or None], [CPU s or None]) of each rank, from run_dir/peak_rss/rank_<r>."""
    per_rank, cpu = [], []
    for r in range(ranks):
        path = os.path.join(run_dir, "peak_rss", f"rank_{r}")
        fields = []
        if os.path.isfile(path):
            with open(path) as f:
                fields = f.read().split()
        per_rank.append(float(fields[0]) if fields else None)
        cpu.append(float(fields[1]) if len(fields) > 1 else None)
    return per_rank, cpu


def run_point(study, index, point, round_):
    """Runs one point (one round of it) and returns its row, {column: value or None} with grid:KEY
    entries; status 'failed' with its error when the run failed, timed out or left no steady metrics."""
    opts = study.opts
    name = grids.short_name(index, point)
    run_dir = os.path.join(opts["out"], "points", name) + (f"/round{round_ + 1}" if opts["repeat"] > 1 else "")
    if os.path.isdir(run_dir):
        subprocess.run(["rm", "-rf", run_dir], check=True)
    os.makedirs(run_dir)
    settings = point_settings(study, point)
    settings["run.dir"] = run_dir
    rc, error, wall, log_text = launch(study, settings, run_dir)
    status = "failed" if rc is None else "ok"
    if rc not in (0, None):
        status, error = "failed", error_of(log_text, rc)

    # The effective configuration: the run's config.ini, else what the point asked for.
    effective = dict(study.config_values)
    effective.update({k: v for k, v in study.defaults.items() if k not in effective})
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
    ranks = dp * pp if dp and pp else None
    m = gb // (dp * mb) if gb and dp and mb else None
    threads = num("run.threads")
    cores = study.cores
    if ranks and not threads:  # launch/mpirun.sh's choice
        threads = max(1, cores // ranks)
    row = {c: None for c in report.FIXED_COLUMNS}
    row.update({"point": name, "dp": dp, "pp": pp, "ranks": ranks, "threads": threads, "cores": cores,
                "oversubscribed": (1 if ranks * threads > cores else 0) if ranks and threads else None,
                "schedule": effective.get("parallel.schedule"), "virtual": v, "micro_batch": mb,
                "micro_batches": m, "global_batch": gb, "layers": layers, "d_model": d, "seq_len": T,
                "steps": num("train.steps"),
                # pp = 1 has no pipeline (the trainer writes no pipeline metrics): no bubble, in theory
                # either; pp > 1 takes the trainer's bubble_theory from metrics.jsonl below.
                "bubble_theory": 0.0 if pp == 1 else None,
                "peak_gflops": study.peak[0], "peak_source": study.peak[1], "wall_s": round(wall, 1),
                "run_dir": os.path.join(opts["out"], "points", name)})
    found = re.search(r"kilolayer: \d+ layers, d_model \d+, (\d+) parameters", log_text)
    if found:
        row["params"] = int(found.group(1))
        if layers and d and T:
            row["flops_per_token"] = 6 * row["params"] + 12 * layers * d * T

    rows = read_metrics(run_dir)
    steady = [r for r in rows if r.get("step", 0) > opts["warmup"]]
    if pp and pp > 1 and rows:
        # The schedule's formula as the trainer wrote it (src/pipeline/schedule.cpp), the same every
        # step: over the steady rows, as the measured bubble, or any row of a run stopped in its warm-up.
        row["bubble_theory"] = median(r.get("bubble_theory") for r in steady or rows)
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
            if steady[-1].get("stage_activation_mb"):
                row["activation_mb_stages"] = ";".join(f"{x:.1f}" for x in steady[-1]["stage_activation_mb"])
        else:
            row["bubble"], row["p2p_wait_s"] = 0.0, 0.0
        if row["flops_per_token"] and row["tokens_per_s"]:
            row["model_gflops"] = row["tokens_per_s"] * row["flops_per_token"] / 1e9
            if study.peak[0]:
                row["mfu"] = row["model_gflops"] / study.peak[0]
    # What the run learned, for learning-rate sweeps (launch/transfer_study.sh): the training loss
    # averaged over the last tenth of the steps, the last validation loss, and where it diverged.
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    if losses:
        row["final_loss"] = statistics.mean(losses[-max(1, len(losses) // 10):])
    vals = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    row["val_loss"] = vals[-1] if vals else None
    diverged = re.search(r"diverged at step (\d+)", log_text)
    row["diverged_step"] = int(diverged.group(1)) if diverged else None
    if ranks and os.path.isdir(os.path.join(run_dir, "peak_rss")):
        per_rank, cpu = read_rank_usage(run_dir, ranks)
        known = [x for x in per_rank if x is not None]
        if known:
            row["peak_rss_mb_max"] = max(known)
            row["peak_rss_mb_ranks"] = ";".join("" if x is None else f"{x:.1f}" for x in per_rank)
        if None not in cpu and wall > 0:  # what share of the machine the job got (others share it)
            row["cpu_share"] = round(sum(cpu) / (wall * cores), 3)
    row.update({f"grid:{k}": v for k, v in point.items()})
    if status != "ok":  # a failed point keeps its settings, the formula and its error only
        for column in report.FIXED_COLUMNS[report.FIXED_COLUMNS.index("steps") + 1:]:
            if column not in KEPT_WHEN_FAILED:
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
        for column in ROUND_MEDIANS:
            row[column] = median(r[column] for r in good)
    failures = [r["error"] for r in rounds if r["status"] != "ok"]
    if good and failures:
        row["error"] = f"{len(failures)} of {len(rounds)} rounds failed, first: {failures[0]}"
    return row


def progress(index, count, point, round_, repeat, row):
    """The line printed after each run: the point, and its throughput, bubble, memory and time or
    its error."""
    desc = " ".join(f"{k}={v}" for k, v in point.items())
    desc = (f"round {round_ + 1}/{repeat} " if repeat > 1 else "") + desc
    if row["status"] != "ok":
        return f"[{index + 1}/{count}] {desc}: FAILED {row['error']}"
    three = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    return (f"[{index + 1}/{count}] {desc}: {row['tokens_per_s']:.0f} tok/s, step {row['step_time_s']:.3f} s, "
            f"bubble {three(row['bubble'])} (theory {three(row['bubble_theory'])}), "
            f"peak {report.fmt(row['peak_rss_mb_max'], 4)} MiB, {row['wall_s']} s")


def main(argv):
    """launch/study.sh with argv: the whole study; returns the exit status (0, or 1 when some point
    failed; a bad command line exits 2 on the way)."""
    root, binary = locations()
    opts, grid, overrides, mpirun_args = grids.parse_args(argv, os.path.join(root, "launch/study.sh"))
    if "--bind-to" not in mpirun_args:
        # Open MPI binds each of up to 2 ranks to one core, so one rank's threads would share a core.
        mpirun_args = ["--bind-to", "none"] + mpirun_args
    if not os.access(binary, os.X_OK):
        usage_error(f"no binary at {binary} (build it, or set KL_BIN)")
    defaults = defaults_from_help(binary)
    keys = grids.grid_keys(grid)
    unknown = [k for k in keys + list(overrides) if k != "micro_batches" and defaults and k not in defaults]
    if unknown:
        usage_error(f"unknown config key(s): {', '.join(unknown)}")
    cores = os.cpu_count() or 1
    os.makedirs(opts["out"], exist_ok=True)
    write_rank_wrapper(opts["out"], binary)
    peak = (opts["peak_gflops"], "user (--peak-gflops)") if opts["peak_gflops"] else measure_peak(binary, cores)
    study = Study(root=root, binary=binary, opts=opts, overrides=overrides, mpirun_args=mpirun_args,
                  config_values=read_ini(opts["config"]), defaults=defaults, cores=cores, peak=peak)
    points = grids.points(grid)
    report.write_json(opts["out"], argv, binary, cores, grid, overrides, mpirun_args, opts["warmup"], peak)
    print(f"study: {len(points)} points over {', '.join('+'.join(a) + f' ({len(grid[a])})' for a in grid)}; "
          f"{cores} cores; peak {report.fmt(peak[0], 4) or '-'} GFLOP/s ({peak[1]})", flush=True)
    runs, start = [[] for _ in points], time.time()
    for round_ in range(opts["repeat"]):  # whole rounds, so slow drifts of a shared machine spread evenly
        for index, point in enumerate(points):
            row = run_point(study, index, point, round_)
            runs[index].append(row)
            rows = [combine(r) for r in runs if r]
            csv_path = report.write_outputs(opts["out"], rows, keys)
            print(progress(index, len(points), point, round_, opts["repeat"], row), flush=True)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"study: {len(rows) - failed} of {len(rows)} points ran, {time.time() - start:.0f} s; {csv_path}")
    if opts["plots"]:
        subprocess.run(["/usr/bin/python3", os.path.join(PACKAGE_DIR, "plot.py"), csv_path, opts["out"]],
                       stdin=subprocess.DEVNULL)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
