#!/usr/bin/env bash
# tools/export_torch.py writes a state_dict that nanoGPT's module tree (tools/nanogpt.py) loads
# strictly and that reproduces `kilolayer eval`'s validation loss on the same windows, tied and
# untied; and `kilolayer lesion`'s loss with each block removed equals PyTorch's with that block
# skipped. A padded vocabulary (model.vocab_padded = 320 for 256 tokens) exports as the true one and
# gives the same loss; its checkpoint evaluates unpadded, and an unpadded one padded, to the same loss.
#   tests/export_torch.sh BIN
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/common.sh"
make_shards "$bin" || exit 1
status=0
# eval_loss ARGS...: the validation loss `kilolayer eval` prints.
eval_loss() { "$bin" eval "$@" | sed -n 's/^validation loss \([0-9.]*\) nats$/\1/p'; }
# same_loss WHAT A B: A and B within 1e-5 relative.
same_loss() {
  awk -v what="$1" -v a="$2" -v b="$3" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d;
    printf "%s: %s vs %s, relative difference %.1e %s\n", what, a, b, d, (d < 1e-5 ? "ok" : "FAIL"); exit !(d < 1e-5) }'
}
for variant in true:0 false:0 true:320; do
  tie=${variant%:*} padded=${variant#*:}
  run=$work/run_$tie$padded
  unpadded=(--config /dev/null --model.layers=4 --model.d_model=32 --model.heads=2 --model.seq_len=32
            --model.tie_embeddings=$tie --train.global_batch=8 --train.micro_batch=4 --train.eval_batches=3
            --data.train="$work/data/train.bin" --data.val="$work/data/val.bin" --run.threads=1)
  common=("${unpadded[@]}" --model.vocab_padded=$padded)
  "$bin" train "${common[@]}" --train.steps=12 --train.lr=0.003 --run.dir="$run" >"$run.log" 2>&1 ||
    { echo "FAIL: training: $(tail -3 "$run.log")"; exit 1; }
  loss=$(eval_loss "${common[@]}" --checkpoint "$run/checkpoints")
  [ -n "$loss" ] || { echo "FAIL: kilolayer eval printed no loss"; exit 1; }
  # The checkpoint under the other padding: its true rows, the padding zero.
  other=$([ "$padded" = 0 ] && echo 320 || echo 0)
  repadded=$(eval_loss "${unpadded[@]}" --model.vocab_padded=$other --checkpoint "$run/checkpoints")
  [ -n "$repadded" ] || { echo "FAIL: the vocab_padded $padded checkpoint did not evaluate with vocab_padded $other"; exit 1; }
  same_loss "vocab_padded $padded checkpoint evaluated with vocab_padded $other" "$repadded" "$loss" || status=1
  "$bin" lesion "${common[@]}" --checkpoint "$run/checkpoints" --out "$work/lesion_$tie$padded.csv" >/dev/null ||
    { echo "FAIL: kilolayer lesion"; exit 1; }
  /usr/bin/python3 "$here/../../tools/export_torch.py" "$run/checkpoints" "$work/model_$tie$padded.pt" || exit 1
  /usr/bin/python3 - "$here/../../tools" "$work/model_$tie$padded.pt" "$work/data/val.bin" "$loss" \
    "$work/lesion_$tie$padded.csv" <<'PY' || status=1
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import torch
import torch.nn.functional as F
from nanogpt import GPT

state = torch.load(sys.argv[2])
model = GPT(layers=4, d_model=32, heads=2, d_ff=128, seq_len=32, vocab=256)
model.load_state_dict(state, strict=True)  # every nanoGPT name present, nothing extra
model.eval()
tokens = np.fromfile(sys.argv[3], dtype=np.uint16, offset=1024).astype(np.int64)
T, total = 32, 3 * 8  # seq_len, eval_batches x global_batch
windows = (len(tokens) - 1) // T  # kilolayer's windows do not overlap: window w starts at token w x T
starts = [((i * windows // total) % windows) * T for i in range(total)]  # its evaluation windows
x = torch.tensor(np.stack([tokens[s:s + T] for s in starts]))
y = torch.tensor(np.stack([tokens[s + 1:s + T + 1] for s in starts]))
def loss_of(skip=None):
    with torch.no_grad():
        return F.cross_entropy(model(x, skip).reshape(-1, 256), y.reshape(-1)).item()
loss = loss_of()
ours = float(sys.argv[4])
rel = abs(loss - ours) / ours
print(f"PyTorch (nanoGPT names) {loss:.6f} vs kilolayer eval {ours:.6f}: relative difference {rel:.1e}",
      "ok" if rel < 1e-5 else "FAIL")
rows = [line.split(",") for line in open(sys.argv[5]).read().split()[1:]]
assert [r[0] for r in rows] == ["none", "0", "1", "2", "3"], rows
worst = max(abs(loss_of(int(r[0])) - float(r[1])) / float(r[1]) for r in rows[1:])
print(f"lesion: each block removed, kilolayer vs PyTorch: worst relative difference {worst:.1e}",
      "ok" if worst < 1e-5 else "FAIL")
sys.exit(0 if rel < 1e-5 and worst < 1e-5 else 1)
PY
done
exit $status
