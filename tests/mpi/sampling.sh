#!/usr/bin/env bash
# kilolayer sample and run.sample_every (docs/sampling.md), on a 4-layer model trained 10 steps:
#  - the same seed gives the same text, another seed other text, temperature 0 the same text for any
#    seed; the prompt comes back first; 60 tokens after a 15-token prompt slide past seq_len = 32;
#  - under mpirun, pp 2 and pp 2 x dp 2 give the text of pp 1;
#  - run.sample_every prints samples at pp 2 and leaves training bitwise as it was;
#  - bad inputs (missing checkpoint, prompt longer than seq_len, bad temperature, top_k, tokens,
#    no prompt) each exit 2 with one line naming the culprit.
#   tests/sampling.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
here=$(dirname "$0")
source "$here/../lib/equivalence.sh" "$bin" 4 "$@"
ckpt=$work/trained/ckpt
run trained 1 1 --train.steps=10 --checkpoint.dir="$ckpt" || exit 1

sample() {  # sample NAME DP PP [FLAGS...]: the text on $work/NAME.txt, the log on $work/NAME.err
  local name=$1 dp=$2 pp=$3
  shift 3
  "${mpirun[@]}" -np $((dp * pp)) "$bin" sample --config "$work/base.ini" --parallel.dp="$dp" --parallel.pp="$pp" \
    --checkpoint "$ckpt" --prompt "GNU General Pub" "$@" >"$work/$name.txt" 2>"$work/$name.err" ||
    fail "sample $name exited $?: $(cat "$work/$name.err")"
}
sample seed7 1 1 --tokens 60 --seed 7 --temperature 1 --top_k 50
sample seed7_again 1 1 --tokens 60 --seed 7 --temperature 1 --top_k 50
sample seed8 1 1 --tokens 60 --seed 8 --temperature 1 --top_k 50
cmp -s "$work/seed7.txt" "$work/seed7_again.txt" || fail "the same seed gave different text"
! cmp -s "$work/seed7.txt" "$work/seed8.txt" || fail "seeds 7 and 8 gave the same 60 tokens"
[ "$(head -c 15 "$work/seed7.txt")" = "GNU General Pub" ] || fail "the text does not start with the prompt"
[ "$(wc -c <"$work/seed7.txt")" -eq $((15 + 60 + 1)) ] || fail "not 15 + 60 bytes and a newline: $(wc -c <"$work/seed7.txt")"
grep -q "resumed from .*step_00000010" "$work/seed7.err" || fail "the log does not name the checkpoint"
echo "sample: seed 7 twice the same, seed 8 other: $(head -c 75 "$work/seed7.txt" | tr '\n' ' ')"
sample greedy1 1 1 --tokens 20 --seed 1 --temperature 0
sample greedy2 1 1 --tokens 20 --seed 2 --temperature 0
cmp -s "$work/greedy1.txt" "$work/greedy2.txt" || fail "temperature 0 depends on the seed"

sample pp2 1 2 --tokens 60 --seed 7 --temperature 1 --top_k 50
cmp -s "$work/seed7.txt" "$work/pp2.txt" || fail "pp 2 gave other text than pp 1: $(cat "$work/pp2.txt")"
sample pp2dp2 2 2 --tokens 60 --seed 7 --temperature 1 --top_k 50
cmp -s "$work/seed7.txt" "$work/pp2dp2.txt" || fail "pp 2 x dp 2 gave other text than pp 1"
echo "sample: pp 2 and pp 2 x dp 2 give the text of pp 1"

# run.sample_every: samples printed by rank 0 at pp 2, training unchanged bit for bit.
run plain_pp2 1 2 --train.steps=10 || exit 1
run sampled_pp2 1 2 --train.steps=10 --run.sample_every=5 || exit 1
[ "$(grep -c '^sample at step [0-9]*: ' "$work/sampled_pp2.log")" -eq 2 ] ||
  fail "run.sample_every = 5 over 10 steps did not print 2 samples: $(grep sample "$work/sampled_pp2.log")"
cmp -s <(cut -d, -f1-4 "$work/plain_pp2/metrics.jsonl") <(cut -d, -f1-4 "$work/sampled_pp2/metrics.jsonl") ||
  fail "run.sample_every changed the training (losses, rates or norms differ)"
cmp -s "$work/plain_pp2/final_params.f32" "$work/sampled_pp2/final_params.f32" || fail "run.sample_every changed the weights"
echo "run.sample_every: $(grep -m1 '^sample at step' "$work/sampled_pp2.log"); training bitwise unchanged"

# Bad inputs: exit 2 and one line naming the problem.
bad() {  # bad NAME PATTERN FLAGS...
  local name=$1 pattern=$2 status
  shift 2
  "$bin" sample --config "$work/base.ini" "$@" >/dev/null 2>"$work/bad.err"
  status=$?
  [ "$status" -eq 2 ] || fail "$name: exit $status, wanted 2: $(cat "$work/bad.err")"
  [ "$(wc -l <"$work/bad.err")" -eq 1 ] && grep -q -- "$pattern" "$work/bad.err" ||
    fail "$name: wanted one line matching /$pattern/, got: $(cat "$work/bad.err")"
}
bad "missing checkpoint" "checkpoint.*$work/nowhere" --checkpoint "$work/nowhere" --prompt "abc"
bad "prompt too long" "prompt encodes to 33 tokens, more than model.seq_len = 32" --checkpoint "$ckpt" \
  --prompt "$(printf 'x%.0s' {1..33})"
bad "negative temperature" "temperature must be a finite number >= 0" --checkpoint "$ckpt" --prompt "ab" --temperature -1
bad "temperature not a number" "temperature must be a number, got 'hot'" --checkpoint "$ckpt" --prompt "ab" --temperature hot
bad "top_k above the vocabulary" "top_k must be in \[0, model.vocab = 256\]" --checkpoint "$ckpt" --prompt "ab" --top_k 300
bad "tokens not an integer" "tokens must be a number, got '2.5'" --checkpoint "$ckpt" --prompt "ab" --tokens 2.5
bad "no prompt" "prompt TEXT is required" --checkpoint "$ckpt"
bad "no checkpoint flag" "checkpoint PATH is required" --prompt "ab"
echo "sample: 8 bad inputs refused, one line each"
