#!/usr/bin/env bash
# The scaling-study harness: trains one config at every point of a grid (any config keys, e.g. dp,
# pp, schedule, micro-batches, virtual, layers), each under mpirun with ranks = dp x pp (through
# launch/mpirun.sh: cores / ranks threads a rank, --oversubscribe when ranks exceed cores,
# --allow-run-as-root as root), and writes one CSV row a point from the run's metrics.jsonl
# (medians over the steps after the warm-up) plus the plots of tools/study/plot.py.
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
# Out: DIR/study.csv (one row a point; columns in docs/studies.md), DIR/study.md (the same
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
# The harness is the Python package tools/study/ (harness.py; grid.py, report.py, rank_wrapper.py,
# plot.py); --help prints the comment above.
root=$(cd "$(dirname "$0")/.." && pwd)  # paths in the command line stay relative to the caller
bin=${KL_BIN:-$root/${KL_BUILD_DIR:-build}/kilolayer}
if [ -z "${KL_BIN:-}" ] && [ ! -x "$bin" ]; then
  (cd "$root" && ./launch/build.sh >/dev/null)
fi
export KL_STUDY_ROOT=$root KL_STUDY_BIN=$bin PYTHONPATH=$root/tools${PYTHONPATH:+:$PYTHONPATH}
exec /usr/bin/python3 -P -m study.harness "$@"  # -P: the caller's directory is not searched for modules
