#!/usr/bin/env bash
# launch/slurm/train.sbatch under a real slurm on this host: starts its own munged, slurmctld and slurmd
# (one node, 2 sockets x 1 core, state and sockets in a temp folder, free ports), submits a 30-step
# dp 2 run (2 ranks through srun --mpi=pmix), sends SIGUSR1 to the batch shell once it has made
# progress (scancel --signal=USR1 --batch, as --signal=B:USR1@... does before the time limit), and
# checks: the ranks saved and exited 75, the job was requeued (Restarts >= 1, two starts in its
# output), the second run resumed from the preemption checkpoint, and the run ended at step 30.
# Exit 77 (skipped) without root or without the slurm and munge packages (launch/setup.sh).
#   tests/slurm.sh BIN
set -u
bin=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs jobs as their user; the test runs the daemons as root)"
for tool in munged slurmctld slurmd sbatch scontrol scancel srun; do
  command -v "$tool" >/dev/null || skip "$tool is missing (launch/setup.sh installs slurmctld slurmd slurm-client munge)"
done

work=$(mktemp -d /tmp/kl-slurm.XXXXXX)
chmod 700 "$work"
pids=()
cleanup() {
  local status=$? pid
  if [ -n "${jobid:-}" ]; then  # end the job before the daemons, so slurmd reaps its steps
    scancel "$jobid" 2>/dev/null
    for _ in $(seq 20); do
      scontrol show job "$jobid" 2>/dev/null | grep -qE "JobState=(PENDING|RUNNING|COMPLETING|REQUEUE|CONFIGURING)" || break
      sleep 0.5
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null
  done
  # Anything left of the job (its batch shell and ranks name files in $work): by pid.
  for pid in $(grep -lsF "$work" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    [ "$pid" != $$ ] && kill -9 "$pid" 2>/dev/null
  done
  if [ $status -ne 0 ] && [ $status -ne 77 ]; then
    for f in "$work"/job.out "$work"/log/slurmctld.log "$work"/log/slurmd.log; do
      [ -r "$f" ] && { echo "--- $f (tail)"; tail -25 "$f"; }
    done
  fi
  [ -n "${KL_KEEP:-}" ] && echo "work: $work" || rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Two free TCP ports (the kernel's choice), for slurmctld and slurmd.
read -r ctld_port slurmd_port < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
[ -n "$slurmd_port" ] || fail "no free ports"

# munge: our own key, socket and daemon (any system munged is left alone).
mkdir -p "$work/munge" "$work/log" "$work/state" "$work/spool"
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munge_socket=$work/munge/munge.socket
munged -F --force --key-file="$work/munge/munge.key" --socket="$munge_socket" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/log/munged.log" \
  --seed-file="$work/munge/munged.seed" >"$work/log/munged.out" 2>&1 &
pids+=($!)

node=$(hostname -s)
export SLURM_CONF=$work/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=kltest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it starts again (default 120 s).
AuthInfo=socket=$munge_socket,cred_expire=5
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/slurmd
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MessageTimeout=10
MailProg=/bin/true
PlugStackConfig=$work/plugstack.conf
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 Sockets=2 CoresPerSocket=1 ThreadsPerCore=1 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
: >"$work/plugstack.conf"

for _ in $(seq 40); do [ -S "$munge_socket" ] && break; sleep 0.25; done
[ -S "$munge_socket" ] || fail "munged did not start: $(cat "$work/log/munged.out" "$work/log/munged.log" 2>/dev/null)"
slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$work/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  sinfo -h -N -o %t 2>/dev/null | grep -qE "^(idle|mix|alloc)" && break
  sleep 0.5
done
sinfo -h -N -o %t 2>/dev/null | grep -qE "^idle" ||
  fail "the node did not come up idle: $(sinfo -N 2>&1; cat "$work/log/slurmctld.out" "$work/log/slurmd.out")"
srun --mpi=list 2>&1 | grep -q pmix || skip "this slurm has no mpi/pmix plugin to start Open MPI ranks"
echo "slurm up: slurmctld on port $ctld_port, slurmd on port $slurmd_port, node $node"

# A tiny run: 30 steps of a 4-layer d_model 32 model at dp 2 (about 0.4 s a step here), checkpoints
# every 10 steps.
source "$root/tests/lib/common.sh"
make_shards "$bin" || fail "kilolayer data"
write_ini "$work/tiny.ini" model.layers=4 model.d_model=32 model.seq_len=128 \
  train.steps=30 train.global_batch=64 train.micro_batch=8 train.lr=0.003 train.warmup=5 train.eval_every=0 \
  train.eval_batches=1 parallel.dp=2 checkpoint.dir="$work/run/checkpoints" checkpoint.every=10 run.threads= \
  run.log_every=1
metrics=$work/run/metrics.jsonl
last_step() { tail -1 "$metrics" 2>/dev/null | sed -n 's/.*"step": *\([0-9]*\).*/\1/p'; }
job_field() { scontrol show job "$jobid" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

start=$(date +%s)
# OMP_WAIT_POLICY: ranks and the daemons share 2 cores. -t 30: the time limit must exceed the
# script's --signal lead (300 s), or slurm signals the job as soon as it looks.
jobid=$(cd "$root" && KL_BIN=$bin OMP_WAIT_POLICY=PASSIVE sbatch --parsable -N1 -n2 -t 30 \
  --output="$work/job.out" launch/slurm/train.sbatch "$work/tiny.ini") || fail "sbatch refused the job"
echo "submitted job $jobid"

# Preempt once it has made progress (and before the end): SIGUSR1 to the batch shell only.
for _ in $(seq 240); do
  step=$(last_step)
  [ -n "$step" ] && [ "$step" -ge 3 ] && break
  [ "$(job_field JobState)" = FAILED ] && fail "the job failed before training"
  sleep 0.25
done
[ -n "$step" ] && [ "$step" -ge 3 ] || fail "no training progress within 60 s (last step: ${step:-none})"
scancel --signal=USR1 --batch "$jobid" || fail "scancel --signal=USR1 --batch"
echo "SIGUSR1 to the batch shell at step $step"

for _ in $(seq 480); do
  state=$(job_field JobState)
  case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 0.25
done
elapsed=$(( $(date +%s) - start ))
restarts=$(job_field Restarts)
echo "job $jobid: $state, exit code $(job_field ExitCode), restarts $restarts, ${elapsed}s from submission"
[ "$state" = COMPLETED ] || fail "the job ended $state"
[ "${restarts:-0}" -ge 1 ] || fail "the job was not requeued (Restarts=$restarts)"
[ "$(grep -c "train.sbatch: job $jobid start" "$work/job.out")" -ge 2 ] || fail "the job output does not show two starts"
grep -q "exited 75: requeueing job $jobid" "$work/job.out" || fail "the first run did not exit 75 and requeue"
resumed=$(grep -o "resumed from .* at step [0-9]*" "$work/job.out" | head -1)
[ -n "$resumed" ] || fail "the second run did not log 'resumed from ... at step K'"
k=${resumed##* }
[ "$k" -ge "$step" ] && [ "$k" -lt 30 ] || fail "resumed at step $k, but preempted at step >= $step of 30"
[ "$(last_step)" = 30 ] || fail "the metrics end at step $(last_step), not 30"
echo "PASS: preempted at step $step, requeued ($restarts restart), $resumed, finished at step 30"
