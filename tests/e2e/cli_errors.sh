#!/usr/bin/env bash
# The real binary on bad command lines, configs and data: each must exit non-zero (2) with one
# message naming the culprit.
set -u
bin=$1
source "$(dirname "$0")/../lib/cli.sh"

printf 'hello kilolayer, a small text to tokenise.\n%.0s' {1..50} >"$work/text.txt"
"$bin" data --out "$work/data" --block 64 "$work/text.txt" >/dev/null || { echo "FAIL: data command"; exit 1; }
write_ini "$work/ok.ini" checkpoint.dir=
printf '[model]\nlayerz = 3\n' >"$work/unknown.ini"
printf '[model]\nlayers = three\n' >"$work/type.ini"
printf '[model]\nd_model = 30\nheads = 4\n' >"$work/heads.ini"
head -c 100 "$work/data/train.bin" >"$work/truncated.bin"
printf 'not a shard at all, just some text that is long enough to hold a header ....%.0s' {1..20} >"$work/magic.bin"

expect_error "no command" "usage" -- "$bin"
expect_error "unknown command" "unknown command" -- "$bin" frobnicate
expect_error "missing --config" "config" -- "$bin" train
expect_error "missing config file" "cannot open" -- "$bin" train --config "$work/nope.ini"
expect_error "unknown key in file" "model.layerz" -- "$bin" train --config "$work/unknown.ini"
expect_error "unknown key on command line" "train.bogus" -- "$bin" train --config "$work/ok.ini" --train.bogus=1
expect_error "wrong type" "model.layers" -- "$bin" train --config "$work/type.ini"
expect_error "negative value" "train.steps" -- "$bin" train --config "$work/ok.ini" --train.steps=-3
expect_error "unknown spike policy" "train.spike_policy" -- "$bin" train --config "$work/ok.ini" --train.spike_policy=sometimes
expect_error "rollback without checkpoints" "spike_policy = rollback.*needs checkpoints" \
  -- "$bin" train --config "$work/ok.ini" --train.spike_policy=rollback --checkpoint.dir=none
expect_error "batch number 0" "data.skip_batches = 3,0: '0' is not a positive integer" \
  -- "$bin" train --config "$work/ok.ini" --data.skip_batches=3,0
expect_error "heads do not divide" "model.heads" -- "$bin" train --config "$work/heads.ini"
expect_error "layout vs world size" "parallel.dp" -- "$bin" train --config "$work/ok.ini" --parallel.dp=2
expect_error "pipeline larger than the world" "parallel.pp" -- "$bin" train --config "$work/ok.ini" --parallel.pp=2
expect_error "bad stage split" "parallel.stage_layers" -- "$bin" train --config "$work/ok.ini" --parallel.pp=2 --parallel.stage_layers=1,1,1
expect_error "bad zero stage" "parallel.zero" -- "$bin" train --config "$work/ok.ini" --parallel.zero=3
expect_error "batch not divisible over dp" "train.global_batch" -- "$bin" train --config "$work/ok.ini" --train.global_batch=3 --train.micro_batch=2
expect_error "truncated shard" "truncated" -- "$bin" train --config "$work/ok.ini" --data.train="$work/truncated.bin"
expect_error "bad magic" "magic" -- "$bin" train --config "$work/ok.ini" --data.val="$work/magic.bin"
expect_error "token above vocab" "model.vocab" -- "$bin" train --config "$work/ok.ini" --model.vocab=50
expect_error "no such shard" "no file matches" -- "$bin" train --config "$work/ok.ini" --data.train="$work/none*.bin"
expect_error "data without --out" "--out" -- "$bin" data "$work/text.txt"
expect_error "text too small for a validation block" "smaller --block" -- "$bin" data --out "$work/d2" "$work/text.txt"

# Under mpirun: a layout that does not match the world is refused once, by rank 0, before any work.
mpirun=(mpirun --oversubscribe --allow-run-as-root)
err=$("${mpirun[@]}" -np 2 "$bin" train --config "$work/ok.ini" --parallel.dp=1 2>&1 >/dev/null)
status=$?
if [ "$status" -ne 0 ] && [ "$(grep -c 'kilolayer: error:.*parallel.dp x parallel.pp = 1 but the job has 2' <<<"$err")" -eq 1 ]; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "FAIL mpirun layout mismatch: exit $status, stderr: $err"
fi
# A rank that fails alone after the configuration (its data file is unreadable) ends the whole job.
cat >"$work/one_rank_fails.sh" <<SH
#!/usr/bin/env bash
shard="$work/data/train.bin"
[ "\$OMPI_COMM_WORLD_RANK" = 1 ] && shard="$work/missing_on_rank_1.bin"
exec "$bin" train --config "$work/ok.ini" --parallel.dp=2 --train.micro_batch=1 --data.train="\$shard" --run.dir="$work/run_fail"
SH
err=$(timeout 60 "${mpirun[@]}" -np 2 bash "$work/one_rank_fails.sh" 2>&1 >/dev/null)
status=$?
# Agreed before any collective: exit 2, one message, from the rank that failed, naming itself.
if [ "$status" -eq 2 ] && grep -q "error: rank 1: .*missing_on_rank_1" <<<"$err" &&
   [ "$(grep -c "error" <<<"$err")" -eq 1 ]; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "FAIL one rank failing alone: exit $status (124 = hung), stderr: $err"
fi

# And the good config trains.
trains() { "$bin" train --config "$work/ok.ini" >/dev/null 2>&1 && [ -s "$work/run/metrics.jsonl" ]; }
check "the valid config trains" trains
report cli_errors
