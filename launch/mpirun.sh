#!/usr/bin/env bash
# Runs kilolayer training under mpirun on this host or a hostfile's hosts, ranks = dp x pp from the
# config (overrides first, then the file's [parallel] section), threads per rank = cores / ranks on
# one host unless run.threads is given.
#   launch/mpirun.sh --config FILE [--section.key=value ...] [-- MPIRUN_ARGS...]
# e.g. launch/mpirun.sh --config configs/deep1024_pp4.ini -- --hostfile hosts --map-by node
#
# Preemption: SIGTERM or SIGINT to this script becomes SIGUSR1 to mpirun, which forwards it to every
# rank; the ranks finish their step, save a checkpoint and exit 75 ("saved, requeue me"), which this
# script returns. (Open MPI's mpirun, sent SIGTERM itself, kills the ranks one second later.)
set -uo pipefail
# The trap comes first: a signal that arrives before mpirun runs is kept (nothing started, nothing to
# save: exit 75 in place of starting), one that arrives while it starts is passed on once $pid is known.
pid="" preempted=0 interrupted=0
trap 'preempted=1 interrupted=1; [ -z "$pid" ] || kill -USR1 "$pid" 2>/dev/null' TERM INT
root=$(cd "$(dirname "$0")/.." && pwd)  # paths in the command line stay relative to the caller
config="" overrides=() mpirun_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --config=*) config=${1#--config=}; shift ;;
    --) shift; mpirun_args=("$@"); break ;;
    *) overrides+=("$1"); shift ;;
  esac
done
[ -n "$config" ] && [ -r "$config" ] || { echo "launch/mpirun.sh: --config FILE (readable) is required" >&2; exit 2; }

# setting KEY FALLBACK: the value of parallel.KEY / run.KEY from the overrides, else the file, else FALLBACK.
source "$root/launch/lib.sh"
setting() { kl_setting "$config" "$1" "$2" "${overrides[@]}"; }
dp=$(setting parallel.dp 1) pp=$(setting parallel.pp 1)
ranks=$(( dp * pp ))
threads=$(setting run.threads 0)
if [ "$threads" = 0 ]; then
  threads=$(( $(nproc) / ranks ))
  [ "$threads" -ge 1 ] || threads=1
fi
command=(mpirun -np "$ranks" -x OMP_NUM_THREADS="$threads")
# More threads than cores: idle OpenMP threads must sleep, or they spin on the cores their peers need.
[ $(( ranks * threads )) -gt "$(nproc)" ] && command+=(-x OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}")
[ "$ranks" -gt "$(nproc)" ] && command+=(--oversubscribe)
# Binding: Open MPI binds each rank to one core by default (np <= 2), which would put all of a rank's
# threads on that core. A rank gets `threads` cores of its own where they exist, else no binding.
# Pass --map-by/--bind-to after -- to choose yourself.
if [[ " ${mpirun_args[*]} " != *" --map-by "* && " ${mpirun_args[*]} " != *" --bind-to "* ]]; then
  if [ $(( ranks * threads )) -le "$(nproc)" ] && [ "$threads" -gt 1 ]; then
    command+=(--map-by "slot:PE=$threads" --bind-to core)
  elif [ $(( ranks * threads )) -gt "$(nproc)" ]; then
    command+=(--bind-to none)
  fi
fi
[ "$(id -u)" -eq 0 ] && command+=(--allow-run-as-root)
# KL_BIN: the program each rank runs instead of build/kilolayer (another build, or a wrapper that
# execs it, as launch/study.sh's).
bin=${KL_BIN:-$root/build/kilolayer}
[ -n "${KL_BIN:-}" ] || [ -x "$bin" ] || "$root/launch/build.sh" >/dev/null
thread_flag=(--run.threads="$threads")
[[ " ${overrides[*]} " == *" --run.threads="* ]] && thread_flag=()
command+=("${mpirun_args[@]}" "$bin" train --config "$config" "${thread_flag[@]}" "${overrides[@]}")

echo "launch/mpirun.sh: ${command[*]}" >&2
if [ "$preempted" = 1 ]; then
  echo "launch/mpirun.sh: preempted before mpirun started; exit 75" >&2
  exit 75
fi
"${command[@]}" &
pid=$!
[ "$preempted" = 0 ] || kill -USR1 "$pid" 2>/dev/null
# wait returns early (status > 128) when a trapped signal arrives, whether mpirun still runs or has
# just ended: wait again, which gives mpirun's own status once it has one (a 75 or a failure that a
# job script must see, not the signal's 143).
while true; do
  interrupted=0
  wait "$pid"
  status=$?
  [ "$interrupted" = 1 ] || break
done
exit "$status"
