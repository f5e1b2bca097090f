# Shared by the communication-fault tests (sourced after lib/equivalence.sh): fault NAME SIGNAL DP PP
# DELAY trains base.ini at dp x pp under mpirun with parallel.timeout_s = 4 and the overrides in
# $fault_args, sends SIGNAL to one rank DELAY seconds after the first step's metrics row (before
# it, a rank may still be in MPI_Init, watched since the chaos soak found it hanging there, or in
# NCCL's setup, which no watchdog covers; a fault at start-up is tests/mpi/chaos_soak.sh's part), and checks that the job ends (within
# 30 s), non-zero, and after SIGSTOP with exit 4 and the watchdog's report of the stuck operation.
# It prints the time from the fault to the job's exit.
fault_args=()
now() { date +%s.%N; }

fault() {  # NAME SIGNAL DP PP DELAY
  local name=$1 signal=$2 dp=$3 pp=$4 delay=$5 pid victim status start took
  "${mpirun[@]}" -np $((dp * pp)) "$bin" train --config "$work/base.ini" --parallel.dp="$dp" --parallel.pp="$pp" \
    --train.steps=100000 --parallel.timeout_s=4 "${fault_args[@]}" --run.dir="$work/$name" >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    [ -s "$work/$name/metrics.jsonl" ] || ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.1
  done
  [ -s "$work/$name/metrics.jsonl" ] || fail "$name: no step within 60 s: $(tail -5 "$work/$name.log")"
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
