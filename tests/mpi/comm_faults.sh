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
source "$(dirname "$0")/../lib/faults.sh"
fault stop_pp STOP 1 2 0.5
fault stop_dp STOP 2 1 0.5
for delay in 0.1 0.6 1.2; do
  fault "kill_pp_$delay" KILL 1 2 "$delay"
  fault "kill_dp_$delay" KILL 2 1 "$delay"
done
