#!/usr/bin/env bash
# ZeRO-1 with its bucketed collectives overlapped (parallel.overlap = true: each bucket's
# reduce-scatter starts during the backward pass, the all-gathers after the update and the next
# forward pass waits for each bucket before the first block that reads it) computes exactly what the
# same collectives compute run after the backward pass (overlap = false): bitwise equal per-step
# losses and final parameters at dp 2 and dp 4 (1 thread per rank, oversubscribed), and across a
# resume from dp 2's step-10 checkpoint onto dp 4. Both agree with one process within
# compare_runs' tolerance (sums over ranks round differently).
#   tests/zero_overlap.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
here=$(dirname "$0")
source "$here/../lib/equivalence.sh" "$bin" 4 "$@"
common=(--model.dropout=0.1 --run.threads=1)
zero=("${common[@]}" --parallel.zero=1)

# Bitwise: the per-step losses and the final parameters of runs $1 and $2.
same() {
  cmp -s <(cut -d, -f1-2 "$work/$1/metrics.jsonl") <(cut -d, -f1-2 "$work/$2/metrics.jsonl") ||
    fail "$1 and $2: per-step losses differ"
  cmp -s "$work/$1/final_params.f32" "$work/$2/final_params.f32" || fail "$1 and $2: final parameters differ"
  echo "bitwise: $1 = $2"
}

run dp1 1 1 "${common[@]}" || exit 1
for dp in 2 4; do
  run "zero${dp}" "$dp" 1 "${zero[@]}" || exit 1
  run "zero${dp}_after" "$dp" 1 "${zero[@]}" --parallel.overlap=false || exit 1
  # Overlap is only exercised with several buckets (parallel.bucket_mb = 0.05 in equivalence.sh).
  grep -qE "ZeRO-1, ([3-9]|[1-9][0-9]+) gradient buckets" "$work/zero${dp}.log" ||
    fail "dp $dp: fewer than 3 buckets: $(grep -o 'ZeRO-1[^;]*' "$work/zero${dp}.log")"
  same "zero${dp}" "zero${dp}_after"
done

# A resume onto another dp: dp 2's checkpoint at step 10, continued at dp 4 both ways.
ckpt=(--checkpoint.every=5 --checkpoint.dir="$work/zero2_ckpt/ckpt")
run zero2_ckpt 2 1 "${zero[@]}" "${ckpt[@]}" --run.stop_after=10 || exit 1
step10=$work/zero2_ckpt/ckpt/step_00000010
[ -d "$step10" ] || fail "no step-10 checkpoint"
run resumed4 4 1 "${zero[@]}" --checkpoint.resume="$step10" || exit 1
run resumed4_after 4 1 "${zero[@]}" --parallel.overlap=false --checkpoint.resume="$step10" || exit 1
grep -q "saved from dp=2" "$work/resumed4.log" || fail "the dp-4 run did not resume from dp 2's checkpoint"
# Steps 11-20 only: the first ten are not in the resumed runs' metrics.
same resumed4 resumed4_after

/usr/bin/python3 "$here/../lib/compare_runs.py" "$work" 20 dp1=zero2,zero4,zero2_after,zero4_after,resumed4
