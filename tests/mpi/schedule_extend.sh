#!/usr/bin/env bash
# Extending a run (issue 15): with the learning-rate horizon in train.decay_steps, 10 steps and then a
# new process resumed with train.steps = 20 equal 20 straight steps bit for bit (per-step losses,
# rates and norms; final parameters), at pp 2 with dropout, for wsd, cosine and linear. With the
# horizon taken from train.steps, the resume says which done step's rate the new config changes.
#   tests/schedule_extend.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
here=$(dirname "$0")
source "$here/../lib/equivalence.sh" "$bin" 4 "$@"

for schedule in wsd cosine linear; do
  horizon=(--train.schedule=$schedule --train.decay_steps=18 --model.dropout=0.1)
  straight=${schedule}_straight extended=${schedule}_extended
  run "$straight" 1 2 "${horizon[@]}" --train.steps=20 || exit 1
  run "$extended" 1 2 "${horizon[@]}" --train.steps=10 --checkpoint.dir="$work/$extended/ckpt" || exit 1
  run "$extended" 1 2 "${horizon[@]}" --train.steps=20 --checkpoint.dir="$work/$extended/ckpt" || exit 1
  grep -q "resumed from .*step_00000010.* at step 10" "$work/$extended.log" || fail "$schedule: no resume at step 10"
  grep -q "train.steps: 10 -> 20" "$work/$extended.log" || fail "$schedule: the changed train.steps was not logged"
  ! grep -q "learning-rate schedule changed" "$work/$extended.log" || fail "$schedule: a rate change was reported"
  cmp -s <(cut -d, -f1-4 "$work/$straight/metrics.jsonl") <(cut -d, -f1-4 "$work/$extended/metrics.jsonl") ||
    fail "$schedule: steps, losses, rates or norms differ between 20 straight steps and 10 + 10"
  cmp -s "$work/$straight/final_params.f32" "$work/$extended/final_params.f32" ||
    fail "$schedule: final parameters differ between 20 straight steps and 10 + 10"
  echo "bitwise: $schedule, decay_steps 18: 20 straight steps = 10 steps + a resume with train.steps = 20"
done

# The horizon from train.steps: extending moves it, and the resume says so.
run cosine_steps 1 2 --train.steps=10 --checkpoint.dir="$work/cosine_steps/ckpt" || exit 1
run cosine_steps 1 2 --train.steps=20 --checkpoint.dir="$work/cosine_steps/ckpt" || exit 1
grep -q "learning-rate schedule changed for the steps already done: step 7 had learning rate" "$work/cosine_steps.log" ||
  fail "the moved cosine horizon was not reported: $(grep -i schedule "$work/cosine_steps.log")"
echo "reported: $(grep -m1 'learning-rate schedule changed' "$work/cosine_steps.log")"
