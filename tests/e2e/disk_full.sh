#!/usr/bin/env bash
# A full disk during a checkpoint save, on a real size-limited file system (a 6 MB tmpfs; skipped,
# visibly, where mounting is not allowed): the job stops with a non-zero exit and a message naming
# the file, `latest` still names the last complete checkpoint and it verifies, and the next start
# (with room again) resumes from it and cleans the unfinished directory.
#   tests/disk_full.sh BIN
set -u
bin=$1
work=$(mktemp -d)
small=$work/small
cleanup() { umount "$small" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${KL_KEEP:-}" ] && trap - EXIT && echo "work: $work"
mkdir -p "$small"
if ! mount -t tmpfs -o size=6m tmpfs "$small" 2>/dev/null; then
  echo "SKIPPED: cannot mount a size-limited tmpfs here (needs root and mount rights)"
  exit 77
fi
source "$(dirname "$0")/../lib/common.sh"
make_shards "$bin" || exit 1
args=(--config /dev/null --model.layers=16 --model.d_model=32 --model.heads=2 --model.seq_len=32
      --train.global_batch=4 --train.micro_batch=4 --train.steps=30 --train.eval_every=0 --train.eval_batches=1
      --data.train="$work/data/train.bin" --data.val="$work/data/val.bin" --run.dir="$work/run" --run.threads=1
      --checkpoint.dir="$small/ckpt" --checkpoint.every=5 --checkpoint.keep=10)
"$bin" train "${args[@]}" >"$work/full.log" 2>&1
status=$?
[ "$status" -ne 0 ] || fail "the run ended well although each 2.6 MB checkpoint cannot fit three times in 6 MB"
grep -q "disk full" "$work/full.log" || fail "no message about the full disk: $(tail -3 "$work/full.log")"
latest=$(cat "$small/ckpt/latest") || fail "no checkpoint survived"
"$bin" inspect "$small/ckpt" >"$work/inspect.log" 2>&1 || fail "latest ($latest) does not verify"
ls -d "$small/ckpt"/*.tmp >/dev/null 2>&1 || fail "no unfinished directory left (was the save interrupted?)"
echo "disk full: exit $status ($(grep -o 'cannot [a-z]* .*' "$work/full.log" | head -1 | sed "s|$small/||g")); latest $latest verifies"
# Room again: a larger file system, the same directory contents, and the run resumes.
mkdir -p "$work/big" && cp -a "$small/ckpt" "$work/big/" && umount "$small"
args=("${args[@]/--checkpoint.dir=$small\/ckpt/--checkpoint.dir=$work/big/ckpt}")
"$bin" train "${args[@]}" >"$work/resume.log" 2>&1 || fail "resuming after the full disk: $(tail -3 "$work/resume.log")"
grep -q "resumed from .*$latest" "$work/resume.log" || fail "the restart did not resume from $latest"
! ls -d "$work/big/ckpt"/*.tmp >/dev/null 2>&1 || fail "the unfinished directory was not cleaned at start"
echo "resumed from $latest with room again, unfinished directory cleaned, run finished"
