#!/usr/bin/env bash
# Communication faults on the GPU path (run.device = cuda: activations, gradients and all-reduces
# over NCCL) under a real mpirun, one GPU per rank; nothing may hang:
#  - a rank SIGSTOPped mid-run (pp 2 and dp 2): the others' watchdogs, which poll NCCL's
#    operations, fire after parallel.timeout_s, abort the communicator, print the operation they
#    wait on with the last started and completed ones, and the job ends with exit 4;
#  - a rank SIGKILLed mid-run (pp 2 and dp 2): the job ends promptly with a non-zero exit.
# The same checks as tests/mpi/comm_faults.sh (tests/lib/faults.sh). NCCL puts one rank on one GPU,
# so this needs two: exit 77 (skipped, saying why) with fewer, or a binary without the CUDA backend.
#   tests/gpu/nccl_faults.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "$gpus" -lt 2 ]; then
  echo "SKIPPED: needs 2 GPUs (NCCL runs one rank per GPU), this machine has $gpus"
  exit 77
fi
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 8 "$@"
source "$(dirname "$0")/../lib/faults.sh"
fault_args=(--run.device=cuda)
run probe 1 1 --run.device=cuda --train.steps=1 ||
  { grep -q "built without the CUDA backend" "$work/probe.log" && echo "SKIPPED: no CUDA backend" && exit 77; exit 1; }
fault stop_pp STOP 1 2 1
fault stop_dp STOP 2 1 1
fault kill_pp KILL 1 2 1
fault kill_dp KILL 2 1 1
