#!/usr/bin/env bash
# A 128-layer pre-norm model (narrow, so that it runs in seconds) trained through the CLI on a real
# English text: the validation loss must fall well below its starting value (ln 256 = 5.55 nats).
set -eu
bin=$1
source "$(dirname "$0")/../lib/common.sh"
"$bin" data --out "$work/data" /usr/share/common-licenses/GPL-3 >/dev/null
write_ini "$work/deep.ini" model.layers=128 model.seq_len=32 model.dropout=0.0 \
  train.steps=60 train.global_batch=8 train.micro_batch=8 train.lr=0.003 train.min_lr=0.0003 train.warmup=10 \
  train.eval_every=60 train.eval_batches=2 checkpoint.dir= parallel.recompute=block run.log_every=10 run.threads=2
"$bin" train --config "$work/deep.ini" | tee "$work/log.txt"
/usr/bin/python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[0]["loss"], rows[-1]["loss"]
val = rows[-1]["val_loss"]
print(f"e2e: loss {first:.3f} at step {rows[0]['step']} -> {last:.3f} at step {rows[-1]['step']}, val {val:.3f}")
assert rows[-1]["step"] == 60, "the run did not finish"
assert last < first - 1.0 and val < 4.0, "the 128-layer model did not learn"
print("e2e_deep_training: 1 passed, 0 failed")
PY
