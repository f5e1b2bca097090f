#!/usr/bin/env bash
# Communication faults under a real mpirun; nothing may hang:
#  - a rank SIGSTOPped mid-run (pp 2 and dp 2): the others' watchdogs fire after parallel.timeout_s,
#    print the operation they wait on with the last started and completed ones, and the job ends
#    with exit 4;
#  - a rank SIGKILLed mid-run (pp 2: point-to-point; dp 2: all-reduce; at several moments): the job
#    ends promptly with a non-zero exit.
# Each scenario prints the time from the fault to the job's exit.
#   tests/comm_faults.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 8 "$@"
fail() { echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }

fault() {  # NAME SIGNAL DP PP DELAY
  local name=$1 signal=$2 dp=$3 pp=$4 delay=$5 pid victim status start took
  "${mpirun[@]}" -np $((dp * pp)) "$bin" train --config "$work/base.ini" --parallel.dp="$dp" --parallel.pp="$pp" \
    --train.steps=100000 --parallel.timeout_s=4 --run.dir="$work/$name" >"$work/$name.log" 2>&1 &
  pid=$!
  sleep "$delay"
  victim=""
  for p in $(pgrep -f "kilolayer train.*--run.dir=$work/$name"); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = kilolayer ] && victim=$p  # the last rank found
  done
  [ -n "$victim" ] || fail "$name: no rank to signal"
  start=$(now)
  kill -"$signal" "$victim"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    pkill -9 -f "kilolayer train.*--run.dir=$work/$name"
    fail "$name: the job still runs 30 s after SIG$signal"
  fi
  wait "$pid"; status=$?
  took=$(awk -v a="$start" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')
  [ "$status" -ne 0 ] || fail "$name: exit 0 after SIG$signal"
  if [ "$signal" = STOP ]; then
    [ "$status" -eq 4 ] || fail "$name: exit $status, expected 4 (the watchdog): $(tail -5 "$work/$name.log")"
    grep -q "communication stuck for .* waiting for #[0-9]* .*last started .*last completed" "$work/$name.log" ||
      fail "$name: no watchdog report: $(tail -5 "$work/$name.log")"
  fi
  echo "$name: SIG$signal -> job exit $status after ${took}s$( [ "$signal" = STOP ] && echo ": $(grep -o 'waiting for.*' "$work/$name.log" | head -1 | cut -c1-110)")"
}
fault stop_pp STOP 1 2 1.5
fault stop_dp STOP 2 1 1.5
for delay in 0.8 1.3 2.1; do
  fault "kill_pp_$delay" KILL 1 2 "$delay"
  fault "kill_dp_$delay" KILL 2 1 "$delay"
done
