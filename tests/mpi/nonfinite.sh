#!/usr/bin/env bash
# A NaN injected into one rank's gradient (KL_INJECT_NAN=RANK:STEP) under mpirun at pp 2 x dp 2:
#  - train.nonfinite=skip: every rank skips that step together (its parameters are exactly those of
#    the step before), counts it in metrics, and the run goes on and finishes;
#  - train.nonfinite=abort, or skip with train.max_skips=0: the run stops at that step with exit 2
#    and one message (from rank 0 only, not one per rank).
#   tests/nonfinite.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
source "$(dirname "$0")/../lib/equivalence.sh" "$bin" 8 "$@"

run before 2 2 --run.stop_after=4 || exit 1
KL_INJECT_NAN=3:5 run skipped 2 2 --run.stop_after=5 || exit 1
cmp -s "$work/before/final_params.f32" "$work/skipped/final_params.f32" ||
  fail "the skipped step changed the parameters"
tail -1 "$work/skipped/metrics.jsonl" | grep -q '"grad_norm":null.*"skipped_steps":1' ||
  fail "step 5 is not recorded as skipped: $(tail -1 "$work/skipped/metrics.jsonl")"
KL_INJECT_NAN=3:5 run goes_on 2 2 || exit 1
[ "$(tail -1 "$work/goes_on/metrics.jsonl" | sed 's/{"step":\([0-9]*\).*/\1/')" = 20 ] || fail "the run did not finish"
echo "skip: step 5 skipped on every rank (parameters bitwise those of step 4), the run finished 20 steps"

for mode in "--train.nonfinite=abort" "--train.max_skips=0"; do
  KL_INJECT_NAN=3:5 "${mpirun[@]}" -np 4 "$bin" train --config "$work/base.ini" --parallel.dp=2 --parallel.pp=2 \
    "$mode" --run.dir="$work/stop" >"$work/stop.log" 2>&1
  status=$?
  [ "$status" -ne 0 ] || fail "$mode: the run went on"
  [ "$(grep -c 'training diverged at step 5' "$work/stop.log")" -eq 1 ] ||
    fail "$mode: expected one message: $(cat "$work/stop.log")"
  echo "$mode: exit $status at step 5, one message: $(grep -o 'training diverged.*' "$work/stop.log" | cut -c1-80)"
done
