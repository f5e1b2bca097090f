#!/usr/bin/env bash
# Token data through the real binary (issue 15):
#  - `kilolayer tokenize` trains a SentencePiece BPE, its shards train, and the run ends with the
#    validation loss in bits per byte, which this script recomputes from tokenizer.ini;
#  - LLaMA-3 shards (uint32, version 7, written here by numpy) train bitwise like the same tokens
#    in GPT-2's uint16 shards;
#  - on data of a few steps an epoch: a run stopped mid-epoch and resumed equals the uninterrupted
#    run bitwise (losses and parameters), and pp 2 x dp 2 matches one process across epochs;
#  - bad inputs get one message and exit 2: a missing tokenizer model, a vocabulary mismatch, a
#    corrupt v7 header, shards too short for seq_len, bad `tokenize` arguments.
#   tests/e2e/token_data.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
mpirun=("$@")
source "$(dirname "$0")/../lib/cli.sh"
gpl=/usr/share/common-licenses/GPL-3
py=/usr/bin/python3

# --- tokenize, train, bits per byte ---
"$bin" tokenize --out "$work/bpe" --vocab 400 --block 512 "$gpl" >"$work/tokenize.log" 2>&1 ||
  { cat "$work/tokenize.log"; exit 1; }
check "tokenize writes shards, model and tokenizer.ini" \
  test -s "$work/bpe/train.bin" -a -s "$work/bpe/val.bin" -a -s "$work/bpe/tokenizer.model" -a -s "$work/bpe/tokenizer.ini"
check "tokenizer.ini names the kind" grep -q "^kind = sentencepiece" "$work/bpe/tokenizer.ini"
bpe=(model.vocab=400 data.train="$work/bpe/train.bin" data.val="$work/bpe/val.bin")
write_ini "$work/bpe.ini" "${bpe[@]}" train.steps=4
"$bin" train --config "$work/bpe.ini" >"$work/bpe_train.log" 2>&1 || { cat "$work/bpe_train.log"; exit 1; }
check "the run names its tokenizer" grep -q "tokenizer sentencepiece 400 (.*bpe/tokenizer.model)" "$work/bpe_train.log"
check "data.txt records the tokenizer" grep -q "^tokenizer 0 vocab 400 hash [0-9a-f]* sentencepiece 400" "$work/run/data.txt"
bits_per_byte() {  # nats/token / ln 2 / (val_bytes / val_tokens), against the printed figure
  "$py" - "$work/bpe_train.log" "$work/bpe/tokenizer.ini" <<'PY'
import math, re, sys
line = [l for l in open(sys.argv[1]) if l.startswith("final validation loss")][0]
nats, bpb, u_nats, u_bpb = map(float, re.findall(r"([0-9.]+) (?:nats/token|bits/byte)", line))
ini = dict(l.split(" = ") for l in open(sys.argv[2]).read().splitlines() if " = " in l)
per_token = int(ini["val_bytes"]) / int(ini["val_tokens"])
assert abs(bpb - nats / math.log(2) / per_token) < 1e-3, (line, per_token)
assert abs(u_bpb - u_nats / math.log(2) / per_token) < 1e-3, (line, per_token)
PY
}
check "bits per byte = nats per token / ln 2 / bytes per token" bits_per_byte

# --- LLaMA-3 shards: the same tokens as uint32, version 7 ---
make_shards "$bin" "$work/data" 256 "$gpl"
to_v7() {
  "$py" - "$@" <<'PY'
import sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
version = int(sys.argv[3]) if len(sys.argv) > 3 else 7
header = np.fromfile(src, dtype=np.int32, count=256)
tokens = np.fromfile(src, dtype=np.uint16, offset=1024).astype(np.uint32)
out = np.zeros(256, dtype=np.int32)
out[:3] = [20240801, version, len(tokens)]
with open(dst, "wb") as f:
    f.write(out.tobytes())
    f.write(tokens.tobytes())
PY
}
mkdir -p "$work/v7"
to_v7 "$work/data/train.bin" "$work/v7/train.bin" && to_v7 "$work/data/val.bin" "$work/v7/val.bin"
write_ini "$work/v1.ini" train.steps=4 run.dir="$work/v1_run"
write_ini "$work/v7.ini" train.steps=4 run.dir="$work/v7_run" data.train="$work/v7/train.bin" data.val="$work/v7/val.bin"
"$bin" train --config "$work/v1.ini" >/dev/null 2>&1 && "$bin" train --config "$work/v7.ini" >/dev/null 2>&1
same_losses() { cmp -s <(cut -d, -f1-2 "$1/metrics.jsonl") <(cut -d, -f1-2 "$2/metrics.jsonl") && [ -s "$1/metrics.jsonl" ]; }
check "v7 shards train bitwise like the same tokens in v1 shards" same_losses "$work/v1_run" "$work/v7_run"

# --- epochs: 1000 bytes of text, ~11 steps an epoch ---
head -c 2000 "$gpl" >"$work/small.txt"
"$bin" data --out "$work/small" --block 200 --val-every 2 "$work/small.txt" >/dev/null
epoch=(data.train="$work/small/train.bin" data.val="$work/small/val.bin" train.steps=30 train.global_batch=8
       train.micro_batch=4 model.dropout=0.1 train.eval_every=0 run.log_every=1 run.save_final_params=true)
write_ini "$work/epoch.ini" "${epoch[@]}"
windows=$(( ($("$py" -c "import os; print(os.path.getsize('$work/small/train.bin') // 2 - 512)") - 1) / 8 ))
echo "epoch tests: $windows windows, $(( windows / 8 )) steps an epoch"
"$bin" train --config "$work/epoch.ini" --run.dir="$work/straight" --checkpoint.dir="$work/straight/ckpt" >/dev/null 2>&1
"$bin" train --config "$work/epoch.ini" --run.dir="$work/split" --checkpoint.dir="$work/split/ckpt" --run.stop_after=17 >/dev/null 2>&1
"$bin" train --config "$work/epoch.ini" --run.dir="$work/split" --checkpoint.dir="$work/split/ckpt" >"$work/split.log" 2>&1
check "the second process resumed at step 17" grep -q "at step 17" "$work/split.log"
check "resumed mid-epoch = uninterrupted, losses bitwise" same_losses "$work/straight" "$work/split"
check "resumed mid-epoch = uninterrupted, parameters bitwise" cmp -s "$work/straight/final_params.f32" "$work/split/final_params.f32"
"${mpirun[@]}" -np 4 "$bin" train --config "$work/epoch.ini" --parallel.dp=2 --parallel.pp=2 --train.micro_batch=2 \
  --run.threads=1 --run.dir="$work/pp2dp2" >"$work/pp2dp2.log" 2>&1 || cat "$work/pp2dp2.log"
check "pp 2 x dp 2 matches one process across epochs" "$py" "$(dirname "$0")/../lib/compare_runs.py" "$work" 30 straight=pp2dp2

# --- refusals ---
cp -r "$work/bpe" "$work/bpe_nomodel" && rm "$work/bpe_nomodel/tokenizer.model"
write_ini "$work/nomodel.ini" model.vocab=400 data.train="$work/bpe_nomodel/train.bin" data.val="$work/bpe_nomodel/val.bin"
expect_error "missing tokenizer model" "tokenizer model .*bpe_nomodel/tokenizer.model named by .*tokenizer.ini is missing" \
  -- "$bin" train --config "$work/nomodel.ini"
expect_error "vocabulary mismatch" "model.vocab = 500 but the shards of .*bpe/train.bin were made by sentencepiece 400 .*a vocabulary of 400" \
  -- "$bin" train --config "$work/bpe.ini" --model.vocab=500
expect_error "validation shards of another tokenizer" "model.vocab = 400 but the shards of .*data/val.bin were made by bytes" \
  -- "$bin" train --config "$work/bpe.ini" --data.val="$work/data/val.bin"
to_v7 "$work/data/val.bin" "$work/v7/bad_version.bin" 1
expect_error "corrupt v7 header" "bad_version.bin: unsupported version 1 for magic 20240801 (LLaMA-3 shards are version 7)" \
  -- "$bin" train --config "$work/v7.ini" --data.val="$work/v7/bad_version.bin"
head -c 3000 "$work/v7/train.bin" >"$work/v7/cut.bin"
expect_error "truncated v7 shard" "cut.bin: header says .* tokens of 4 bytes.*(truncated)" \
  -- "$bin" train --config "$work/v7.ini" --data.train="$work/v7/cut.bin"
expect_error "shards too short for seq_len" "val.bin: .* tokens, fewer than model.seq_len + 1 = 5001" \
  -- "$bin" train --config "$work/bpe.ini" --model.seq_len=5000
expect_error "tokenize without --out" "tokenize: --out DIR is required" -- "$bin" tokenize --vocab 300 "$gpl"
expect_error "tokenize without --vocab or --model" "give either --vocab N .* not neither" -- "$bin" tokenize --out "$work/t" "$gpl"
expect_error "tokenize with both" "not both" -- "$bin" tokenize --out "$work/t" --vocab 300 --model "$work/bpe/tokenizer.model" "$gpl"
expect_error "tokenize --vocab not a number" "tokenize: --vocab must be an integer, got 'many'" -- "$bin" tokenize --out "$work/t" --vocab many "$gpl"
expect_error "tokenize --vocab too small" "cannot train a BPE vocabulary of 100 on this text: Vocabulary size is smaller than required_chars" \
  -- "$bin" tokenize --out "$work/t" --vocab 100 "$gpl"
expect_error "tokenize --model missing" "tokenize: the tokenizer model $work/none.model does not exist" \
  -- "$bin" tokenize --out "$work/t" --model "$work/none.model" "$gpl"
expect_error "tokenize unknown option" "tokenize: unknown option --merges" -- "$bin" tokenize --out "$work/t" --vocab 300 --merges 5 "$gpl"
expect_error "tokenize without text" "tokenize: no input text files" -- "$bin" tokenize --out "$work/t" --vocab 300
expect_error "tokenize unreadable text" "tokenize: cannot read $work/nothing.txt" -- "$bin" tokenize --out "$work/t" --vocab 300 "$work/nothing.txt"
# --model: an existing model re-tokenizes other text with the same ids.
"$bin" tokenize --out "$work/again" --model "$work/bpe/tokenizer.model" --block 512 "$gpl" >/dev/null 2>&1
check "tokenize --model reproduces the shards" cmp -s "$work/again/train.bin" "$work/bpe/train.bin"
report token_data
