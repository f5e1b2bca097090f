#!/usr/bin/env bash
# Checkpoints under faults, with real processes and signals:
#  - kill -9 of every rank (and mpirun) at random moments while checkpoints are
#    written every step: afterwards `latest` and every committed step directory verify, and the next
#    start resumes from `latest`;
#  - a truncated file, an unsealed file, a flipped byte, a missing dataset, a file that is not a
#    checkpoint and a wrong `latest`: eval and inspect exit 2 with a message naming the problem
#    (never a crash, never silent acceptance), also under mpirun with one message; the same damage
#    behind a forged seal is caught by the checks behind it (the index's parser, per-dataset CRC);
#  - a world-writable checkpoint directory is refused unless allowed; a `latest` or step directory
#    that is a symbolic link is refused;
#  - preemption: SIGTERM to launch/mpirun.sh (which turns it into SIGUSR1 for mpirun) and SIGTERM
#    sent to every rank directly (as slurm does): exit 75 after saving the step in progress, and the
#    resumed run ends bitwise where an uninterrupted run ends.
#   tests/checkpoint_faults.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
here=$(dirname "$0")
source "$here/../lib/equivalence.sh" "$bin" 16 "$@"

# --- kill -9 during saves: a model whose checkpoint (3 x 50 MB) takes longer to write than a step.
big=(--model.layers=64 --model.d_model=128 --model.seq_len=16 --train.global_batch=2 --train.micro_batch=1
     --train.steps=1000 --checkpoint.every=1 --checkpoint.keep=2 --checkpoint.dir="$work/kill/ckpt"
     --parallel.pp=2 --run.dir="$work/kill" --run.save_final_params=false)
kills=0 mid_save=0
# Each kill lands a set delay after the run's first save of this start (a loaded machine is slow).
for delay in 1.3 0.3 2.1 0.6 2.6 1.6 0.9 1.9; do
  "${mpirun[@]}" -np 2 "$bin" train --config "$work/base.ini" "${big[@]}" >"$work/kill.log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do grep -q "^checkpoint: step" "$work/kill.log" 2>/dev/null && break; sleep 0.05; done
  sleep "$delay"
  pkill -9 -f "kilolayer train.*--run.dir=$work/kill"  # the ranks and mpirun, whose command lines carry it
  { wait "$pid"; } 2>/dev/null
  while pgrep -f "kilolayer train.*--run.dir=$work/kill" >/dev/null; do sleep 0.05; done
  kills=$((kills + 1))
  ls -d "$work/kill/ckpt"/*.tmp >/dev/null 2>&1 && mid_save=$((mid_save + 1))
  [ -f "$work/kill/ckpt/latest" ] || continue
  for dir in "$work/kill/ckpt"/step_*; do
    case $dir in *.tmp) continue ;; esac
    "$bin" inspect "$dir" >"$work/inspect.log" 2>&1 ||
      fail "after kill -9 at ${delay}s, committed $dir does not verify: $(tail -2 "$work/inspect.log")"
  done
done
last=$(cat "$work/kill/ckpt/latest" 2>/dev/null) || fail "no checkpoint was ever committed"
echo "kill -9: $kills kills ($mid_save during a save), every committed checkpoint verified, latest $last"
"${mpirun[@]}" -np 2 "$bin" train --config "$work/base.ini" "${big[@]}" --run.stop_after=$((10#${last#step_} + 1)) \
  >"$work/kill_resume.log" 2>&1 || fail "resuming after the kills: $(tail -3 "$work/kill_resume.log")"
grep -q "resumed from .*$last" "$work/kill_resume.log" || fail "the restart did not resume from $last"

# --- corrupt checkpoints: each read must fail with exit 2 and a message naming the problem.
run good 1 1 --checkpoint.dir="$work/good" --train.steps=3 || exit 1
good=$work/good/step_00000003/checkpoint.h5
expect_refused() {  # NAME FILE PATTERN
  local name=$1 file=$2 pattern=$3 status
  for command in eval inspect; do
    if [ $command = eval ]; then
      "$bin" eval --config "$work/base.ini" --checkpoint "$file" >"$work/$name.log" 2>&1; status=$?
    else
      "$bin" inspect "$file" >"$work/$name.log" 2>&1; status=$?
    fi
    [ "$status" -eq 2 ] || fail "$name ($command): exit $status, expected 2: $(tail -2 "$work/$name.log")"
    grep -q "$pattern" "$work/$name.log" || fail "$name ($command): no '$pattern' in: $(tail -2 "$work/$name.log")"
  done
  echo "refused: $name ($(grep -o "$pattern.*" "$work/$name.log" | head -1 | cut -c1-90))"
}
# reseal FILE: writes a valid seal over FILE as it now is (what a damaged file with a forged seal
# looks like), so the checks behind the seal are exercised too.
reseal() {
  /usr/bin/python3 - "$1" <<'PY'
import sys, zlib
raw = bytearray(open(sys.argv[1], "rb").read())
seal = b"kilolayer checkpoint 3\nsize %d\ncrc32 %08x\n" % (len(raw), zlib.crc32(raw[512:]))
raw[:512] = seal.ljust(512, b"\0")
open(sys.argv[1], "wb").write(raw)
PY
}
cp "$good" "$work/truncated.h5" && truncate -s $(( $(stat -c %s "$good") / 2 )) "$work/truncated.h5"
expect_refused truncated "$work/truncated.h5" "bytes, its seal says .* (truncated)"
cp "$good" "$work/unsealed.h5" && dd if=/dev/zero of="$work/unsealed.h5" bs=512 count=1 conv=notrunc status=none
expect_refused unsealed "$work/unsealed.h5" "not sealed: the save that wrote it never finished"
cp "$good" "$work/flipped.h5"
/usr/bin/python3 - "$work/flipped.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    offset = f["model/layers/000012/mlp.fc.weight"].id.get_offset()
with open(sys.argv[1], "r+b") as f:
    f.seek(offset + 1001)
    byte = f.read(1)
    f.seek(offset + 1001)
    f.write(bytes([byte[0] ^ 0x10]))
PY
expect_refused flipped_byte "$work/flipped.h5" "checksum mismatch over the file"
cp "$work/flipped.h5" "$work/flipped_resealed.h5" && reseal "$work/flipped_resealed.h5"
expect_refused flipped_byte_resealed "$work/flipped_resealed.h5" "mlp.fc.weight: checksum mismatch"
# index_edit FILE PYTHON: applies PYTHON to `index` (the index's text after its first line, bytes)
# and writes it back with its length updated (the user block has room to spare).
index_edit() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
raw = bytearray(open(sys.argv[1], "rb").read())
length = int(raw[512:541].split()[2])
index = bytes(raw[541:512 + length])
index = eval(sys.argv[2])
text = b"kilolayer index %012d\n" % (len(index) + 29) + index
raw[512:512 + max(length, len(text))] = text.ljust(length, b"\0")
open(sys.argv[1], "wb").write(raw)
PY
}
cp "$good" "$work/missing.h5"
index_edit "$work/missing.h5" 'b"".join(l for l in index.splitlines(True) if not l.startswith(b"tensor optim/exp_avg/final_norm.bias "))'
expect_refused missing_dataset "$work/missing.h5" "checksum mismatch over the file"
reseal "$work/missing.h5"
expect_refused missing_dataset_resealed "$work/missing.h5" "optim/exp_avg/final_norm.bias is missing"
cp "$good" "$work/moved.h5"  # a dataset's entry pointing past the end of the file
index_edit "$work/moved.h5" 'index.replace(b"tensor model/final_norm.bias 00000", b"tensor model/final_norm.bias 00009")'
reseal "$work/moved.h5"
expect_refused index_past_the_end_resealed "$work/moved.h5" "its index is malformed: model/final_norm.bias: .* do not fit"
head -c 100000 /dev/urandom >"$work/garbage.h5"
expect_refused not_a_checkpoint "$work/garbage.h5" "not a kilolayer checkpoint"
# Random bytes that start with a zero byte (1 file in 256; CI met one): still not a checkpoint, not
# an unsealed one (that is a user block of zeros).
{ printf '\0'; head -c 99999 /dev/urandom; } >"$work/garbage.h5"
expect_refused not_a_checkpoint_zero_first "$work/garbage.h5" "not a kilolayer checkpoint"
head -c 100000 /dev/urandom >"$work/garbage.h5" && reseal "$work/garbage.h5"
expect_refused no_index_resealed "$work/garbage.h5" "no index after its seal"
mkdir -p "$work/pointer" && echo step_00000042 >"$work/pointer/latest"
expect_refused dangling_latest "$work/pointer" "names step_00000042, which is missing"
# Under mpirun: rank 0 verifies the seal before any rank opens the file; the job ends with one
# message (not one per rank) and exit 2, no MPI_Abort.
"${mpirun[@]}" -np 2 "$bin" eval --config "$work/base.ini" --parallel.pp=2 --checkpoint "$work/flipped.h5" \
  >"$work/mpi_flipped.log" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "mpirun eval of a corrupt checkpoint: exit $status, expected 2: $(tail -3 "$work/mpi_flipped.log")"
[ "$(grep -c "error" "$work/mpi_flipped.log")" -eq 1 ] || fail "mpirun eval: not exactly one error line: $(cat "$work/mpi_flipped.log")"
grep -q "checksum mismatch over the file" "$work/mpi_flipped.log" || fail "mpirun eval: $(tail -3 "$work/mpi_flipped.log")"
grep -q "MPI_ABORT" "$work/mpi_flipped.log" && fail "mpirun eval aborted instead of a clean exit"
# A stage's tensors corrupt behind a forged seal (layer 12: stage 1): that rank alone finds it and
# says so, once, naming itself.
"${mpirun[@]}" -np 2 "$bin" eval --config "$work/base.ini" --parallel.pp=2 --checkpoint "$work/flipped_resealed.h5" \
  >"$work/mpi_resealed.log" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "mpirun eval (forged seal): exit $status: $(tail -3 "$work/mpi_resealed.log")"
[ "$(grep -c "error" "$work/mpi_resealed.log")" -eq 1 ] || fail "mpirun eval (forged seal): $(cat "$work/mpi_resealed.log")"
grep -q "error: rank 1: .*layers/000012/mlp.fc.weight: checksum mismatch" "$work/mpi_resealed.log" ||
  fail "mpirun eval (forged seal): $(tail -3 "$work/mpi_resealed.log")"
# A data shard missing: every rank finds it before the first collective; one message, exit 2.
"${mpirun[@]}" -np 2 "$bin" train --config "$work/base.ini" --parallel.pp=2 --data.val="$work/no_such_shard.bin" \
  --run.dir="$work/noshard" >"$work/mpi_noshard.log" 2>&1
status=$?
[ "$status" -eq 2 ] && [ "$(grep -c "error" "$work/mpi_noshard.log")" -eq 1 ] &&
  grep -q "no_such_shard.bin" "$work/mpi_noshard.log" || fail "missing shard under mpirun: exit $status: $(cat "$work/mpi_noshard.log")"
echo "refused under mpirun at pp=2, one message: a missing data shard"
echo "refused under mpirun at pp=2, one message each: flipped byte (seal), flipped byte behind a forged seal (rank)"

# --- filesystem hygiene: a world-writable checkpoint directory is refused unless allowed, and the
# store follows no link it did not make.
mkdir -p "$work/open" && chmod 777 "$work/open"
"$bin" train --config "$work/base.ini" --train.steps=2 --checkpoint.dir="$work/open" --run.dir="$work/open_run" \
  >"$work/open.log" 2>&1 && fail "a world-writable checkpoint.dir was accepted"
grep -q "world-writable" "$work/open.log" || fail "no world-writable message: $(cat "$work/open.log")"
run open_allowed 1 1 --train.steps=2 --checkpoint.dir="$work/open" --checkpoint.allow_world_writable=true || exit 1
echo "refused: a world-writable checkpoint.dir (accepted with checkpoint.allow_world_writable=true)"
mkdir -p "$work/linked" && cp -r "$work/good/step_00000003" "$work/elsewhere" &&
  ln -s "$work/elsewhere" "$work/linked/step_00000003" && echo step_00000003 >"$work/linked/latest"
expect_refused symlinked_step "$work/linked" "step_00000003 is a symbolic link, refused"
rm "$work/linked/latest" && ln -s "$work/good/latest" "$work/linked/latest"
expect_refused symlinked_latest "$work/linked" "is a symbolic link, refused"

# --- preemption: the uninterrupted reference, then two preempted runs resumed to the end.
steps=150
pre=(--train.steps=$steps --checkpoint.every=0 --model.dropout=0.1)
run reference 1 2 "${pre[@]}" --checkpoint.dir="$work/reference/ckpt" || exit 1
preempt() {  # NAME HOW: launcher (SIGTERM to launch/mpirun.sh) | ranks (SIGTERM to every rank)
  local name=$1 how=$2 pid status logged saved
  if [ "$how" = launcher ]; then
    "$here/../../launch/mpirun.sh" --config "$work/base.ini" --parallel.pp=2 "${pre[@]}" \
      --checkpoint.dir="$work/$name/ckpt" --run.dir="$work/$name" -- "${mpirun[@]:1}" >"$work/$name.log" 2>&1 &
  else
    "${mpirun[@]}" -np 2 "$bin" train --config "$work/base.ini" --parallel.pp=2 "${pre[@]}" \
      --checkpoint.dir="$work/$name/ckpt" --run.dir="$work/$name" >"$work/$name.log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do [ "$(cat "$work/$name/metrics.jsonl" 2>/dev/null | wc -l)" -ge 20 ] && break; sleep 0.1; done
  local start=$(date +%s.%N)
  if [ "$how" = launcher ]; then
    kill -TERM "$pid"
  else  # the ranks only, not mpirun (whose command line matches too)
    for rank in $(pgrep -f "kilolayer train.*--run.dir=$work/$name"); do
      [ "$(cat /proc/"$rank"/comm 2>/dev/null)" = kilolayer ] && kill -TERM "$rank"
    done
  fi
  wait "$pid"; status=$?
  local took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  [ "$status" -eq 75 ] || fail "$name: exit $status after SIGTERM, expected 75: $(tail -5 "$work/$name.log")"
  logged=$(tail -1 "$work/$name/metrics.jsonl" | sed 's/{"step":\([0-9]*\).*/\1/')
  saved=$(cat "$work/$name/ckpt/latest")
  [ "$saved" = "$(printf 'step_%08d' "$logged")" ] || fail "$name: last step $logged but checkpoint $saved"
  [ "$logged" -lt "$steps" ] || fail "$name: the run finished before the signal took effect"
  run "$name" 1 2 "${pre[@]}" --checkpoint.dir="$work/$name/ckpt" || exit 1
  cmp -s "$work/reference/final_params.f32" "$work/$name/final_params.f32" || fail "$name: resumed run differs from the reference"
  echo "preempted ($how): exit 75 ${took}s after SIGTERM, saved step $logged (the last one run: 0 steps lost), resumed bitwise"
}
preempt sigterm_launcher launcher
preempt sigterm_ranks ranks
