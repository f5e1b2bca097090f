#!/usr/bin/env bash
# Loss and gradient-norm spikes (train.spike_policy) and the data on resume, at pp 2 x dp 2 under
# mpirun, with a finite spike injected into one rank's gradient (KL_INJECT_SPIKE=RANK:STEP):
#  - off: the spike trains on (its gradient norm is far above the others: the injection works);
#  - a clean run with skip finds no spike and ends bitwise where a run with the policy off ends;
#  - skip: every rank skips that step together, the row says so, and the parameters are bitwise
#    those of a run whose same step was skipped for a NaN instead;
#  - rollback: the run goes back to the last checkpoint and never uses that batch again; stopped
#    after the rollback and resumed, it ends bitwise where a run that never saw the spike and was
#    told to skip that batch (data.skip_batches) ends;
#  - a resume on other data stops with a message naming the shard; a moved copy of the same data
#    resumes; checkpoint.allow_data_change=true resumes on other data, saying so.
#   tests/mpi/spikes.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 8 "$@"
row() { grep "^{\"step\":$2," "$work/$1/metrics.jsonl"; }  # row RUN STEP
same() { cmp -s "$work/$1/final_params.f32" "$work/$2/final_params.f32" || fail "$3"; }
spike=(--train.spike_window=6)

KL_INJECT_SPIKE=3:14 run off 2 2 || exit 1
row off 14 | grep -q '"spike"' && fail "spike_policy = off reported a spike"
python3 - "$work/off/metrics.jsonl" <<'PY' || fail "the injected spike does not stand out"
import json, sys
norms = {r["step"]: r["grad_norm"] for r in map(json.loads, open(sys.argv[1]))}
others = max(v for k, v in norms.items() if k != 14)
assert norms[14] > 100 * others, (norms[14], others)
print(f"off: step 14's gradient norm {norms[14]:.1f}, at most {others:.3f} elsewhere: trained on")
PY

run clean_off 2 2 || exit 1
run clean_skip 2 2 --train.spike_policy=skip "${spike[@]}" || exit 1
grep -q '"spike"' "$work/clean_skip/metrics.jsonl" && fail "a clean run found a spike: $(grep '"spike"' "$work/clean_skip/metrics.jsonl")"
same clean_off clean_skip "the detector changed a clean run"
echo "clean: no spike found in 20 steps, parameters bitwise those of spike_policy = off"

KL_INJECT_SPIKE=3:14 run skip 2 2 --train.spike_policy=skip "${spike[@]}" || exit 1
row skip 14 | grep -q '"spike":{"action":"skip","at_step":14' || fail "step 14 not reported: $(row skip 14)"
grep -q "spike at step 14: .*step skipped" "$work/skip.log" || fail "no progress line: $(cat "$work/skip.log")"
KL_INJECT_NAN=3:14 run nan 2 2 --train.spike_policy=skip "${spike[@]}" || exit 1
same nan skip "the spike's skip and the NaN's skip of step 14 ended apart"
echo "skip: step 14 skipped on every rank, parameters bitwise those of the NaN-skipped run"

# Rollback: checkpoints every 5 steps; the spike at 14 goes back to 10 and skips batch 14.
ckpt=(--checkpoint.dir="$work/rollback_ckpt" --checkpoint.every=5 --checkpoint.keep=5)
KL_INJECT_SPIKE=3:14 run rollback 2 2 --train.spike_policy=rollback "${spike[@]}" "${ckpt[@]}" --run.stop_after=16 ||
  exit 1
grep -q "spike at step 14: .*rolling back, batch 14 skipped" "$work/rollback.log" || fail "no rollback line: $(cat "$work/rollback.log")"
row rollback 14 | head -1 | grep -q '"spike":{"action":"rollback","at_step":14,.*"to_step":10,"skipped_batch":14}' ||
  fail "step 14's row does not report the rollback: $(row rollback 14)"
steps=$(sed 's/{"step":\([0-9]*\).*/\1/' "$work/rollback/metrics.jsonl" | tr '\n' ' ')
[ "$steps" = "$(seq -s ' ' 1 14) $(seq -s ' ' 11 16) " ] || fail "metrics rows around the rollback: $steps"
run rollback 2 2 --train.spike_policy=rollback "${spike[@]}" "${ckpt[@]}" || exit 1  # resumed from 16
grep -q "resumed from .*step_00000016" "$work/rollback.log" || fail "the second part did not resume: $(head -5 "$work/rollback.log")"
run never 2 2 --train.spike_policy=skip "${spike[@]}" --data.skip_batches=14 || exit 1
same never rollback "the rolled-back run and the run that skipped batch 14 from the start ended apart"
cmp -s "$work/never/final_params.f32" "$work/clean_skip/final_params.f32" && fail "skipping batch 14 changed nothing"
echo "rollback: back to step 10, batch 14 skipped; stopped at 16, resumed, bitwise the run that never saw it"

# A spike that every batch meets at step 14 (KL_INJECT_SPIKE=...:repeat): the replays between the
# checkpoint and the spike do not break the streak, so after train.max_skips rollbacks the run stops.
KL_INJECT_SPIKE=3:14:1000:repeat "${mpirun[@]}" -np 4 "$bin" train --config "$work/base.ini" --parallel.dp=2 \
  --parallel.pp=2 --train.spike_policy=rollback "${spike[@]}" --train.max_skips=2 \
  "${ckpt[@]/rollback_ckpt/loop_ckpt}" --run.dir="$work/loop" >"$work/loop.log" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "a spike at every batch of step 14 exited $status: $(tail -3 "$work/loop.log")"
grep -q "spike at step 14: 3 in a row, more than train.max_skips = 2" "$work/loop.log" ||
  fail "no message about the streak: $(grep -i spike "$work/loop.log" | tail -3)"
[ "$(grep -c 'rolling back' "$work/loop.log")" -eq 2 ] || fail "expected 2 rollbacks: $(grep -c 'rolling back' "$work/loop.log")"
echo "rollback loop: a spike no batch avoids stops the run after 2 rollbacks (exit 2)"

# The data on resume.
run part 1 2 "${ckpt[@]/rollback_ckpt/data_ckpt}" --run.stop_after=10 || exit 1
cp -r "$work/data" "$work/moved"
run moved 1 2 "${ckpt[@]/rollback_ckpt/data_ckpt}" --run.stop_after=12 \
  --data.train="$work/moved/train.bin" --data.val="$work/moved/val.bin" || fail "a moved copy of the data was refused"
make_shards "$bin" "$work/other" 128 || exit 1
"${mpirun[@]}" -np 2 "$bin" train --config "$work/base.ini" --parallel.pp=2 "${ckpt[@]/rollback_ckpt/data_ckpt}" \
  --data.train="$work/other/train.bin" --data.val="$work/other/val.bin" --run.dir="$work/other_run" \
  >"$work/other.log" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "a resume on other data exited $status: $(tail -3 "$work/other.log")"
grep -q "was trained on other data than this run's" "$work/other.log" && grep -q "data.train shard 0: " "$work/other.log" ||
  fail "no message naming the shard: $(cat "$work/other.log")"
[ "$(grep -c 'trained on other data' "$work/other.log")" -eq 1 ] || fail "one message per rank: $(cat "$work/other.log")"
run allowed 1 2 "${ckpt[@]/rollback_ckpt/data_ckpt}" --data.train="$work/other/train.bin" \
  --data.val="$work/other/val.bin" --checkpoint.allow_data_change=true || fail "allow_data_change did not resume"
grep -q "data changed since the checkpoint" "$work/allowed.log" || fail "the accepted change was not reported"
# A thousand shards: their fingerprint (about 100 KB) outgrows an HDF5 attribute of the oldest
# object format (64 KiB); the save and the resume must still work.
mkdir -p "$work/many"
for i in $(seq -w 1 1000); do cp "$work/data/val.bin" "$work/many/shard_$i.bin"; done
"$bin" train --config "$work/base.ini" --data.train="$work/many/*.bin" --train.steps=2 --train.eval_every=0 \
  --checkpoint.dir="$work/many_ckpt" --run.dir="$work/many_run" >"$work/many.log" 2>&1 ||
  fail "1000 shards: $(tail -3 "$work/many.log")"
"$bin" train --config "$work/base.ini" --data.train="$work/many/*.bin" --train.steps=3 --train.eval_every=0 \
  --checkpoint.dir="$work/many_ckpt" --run.dir="$work/many_run" >"$work/many.log" 2>&1 ||
  fail "1000 shards, resumed: $(tail -3 "$work/many.log")"
grep -q "resumed from .*step_00000002" "$work/many.log" || fail "1000 shards: no resume: $(head -3 "$work/many.log")"
echo "data: other shards refused ($(grep -o 'data.train shard 0: [^,]*' "$work/other.log")); a moved copy" \
  "resumed; allow_data_change resumed, saying so"
echo "spikes: all passed"
