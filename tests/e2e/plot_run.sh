#!/usr/bin/env bash
# tools/plot_run.py on a tiny run with diagnostics: the five PNGs exist, are images of the size asked
# and hold drawings (many colours, not a blank canvas), and the heatmap has one cell per block and
# diagnosed step; a missing directory, a malformed metrics.jsonl, a run without config.ini and a
# damaged diagnostics.h5 each get one line and exit 2.
#   tests/plot_run.sh BIN
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/common.sh"
plot=$here/../../tools/plot_run.py
make_shards "$bin" || exit 1
write_ini "$work/run.ini" model.layers=6 train.steps=12 train.eval_every=4 run.diag_every=2
"$bin" train --config "$work/run.ini" >"$work/train.log" 2>&1 || fail "training: $(tail -3 "$work/train.log")"
/usr/bin/python3 "$plot" "$work/run" >"$work/plot.log" 2>&1 || fail "plot_run: $(cat "$work/plot.log")"
/usr/bin/python3 - "$work/run/plots" <<'PY' || exit 1
import os, sys
import h5py
import matplotlib.image as image
import numpy as np
out = sys.argv[1]
names = ["loss.png", "lr.png", "grad_norm.png", "tokens_per_s.png", "residual_grad.png"]
for name in names:
    pixels = image.imread(os.path.join(out, name))
    colours = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
    assert pixels.shape[:2] == ((495, 770) if name == "residual_grad.png" else (462, 770)), (name, pixels.shape)
    assert colours > 50, f"{name}: {colours} colours: nothing drawn?"
    print(f"{name}: {pixels.shape[1]}x{pixels.shape[0]}, {colours} colours")
# The heatmap's data: 6 blocks x the diagnosed steps 1, 2, 4, ..., 12, all gradients positive.
with h5py.File(os.path.join(out, "..", "diagnostics.h5")) as f:
    assert list(f["step"][()]) == [1, 2, 4, 6, 8, 10, 12] and f["residual_grad_norm"].shape == (7, 6)
    assert (f["residual_grad_norm"][()] > 0).all()
PY
[ "$(wc -l <"$work/plot.log")" -eq 5 ] || fail "plot_run did not list five files: $(cat "$work/plot.log")"

# One line and exit 2 for each bad run directory.
bad() {  # bad NAME PATTERN RUN_DIR
  local status
  /usr/bin/python3 "$plot" "$3" >/dev/null 2>"$work/bad.err"
  status=$?
  [ "$status" -eq 2 ] && [ "$(wc -l <"$work/bad.err")" -eq 1 ] && grep -q -- "$2" "$work/bad.err" ||
    fail "$1: exit $status, wanted 2 and one line matching /$2/: $(cat "$work/bad.err")"
}
bad "missing directory" "plot_run: error: $work/nowhere is not a directory" "$work/nowhere"
mkdir -p "$work/empty" "$work/garbled" "$work/no_config" "$work/bad_diag"
bad "no metrics" "metrics.jsonl does not exist" "$work/empty"
head -3 "$work/run/metrics.jsonl" >"$work/garbled/metrics.jsonl"
echo '{"step": 4, "loss": 2.5' >>"$work/garbled/metrics.jsonl"
cp "$work/run/config.ini" "$work/garbled/"
bad "truncated metrics row" "garbled/metrics.jsonl:4: not JSON" "$work/garbled"
cp "$work/run/metrics.jsonl" "$work/no_config/"
bad "no config.ini" "config.ini does not exist" "$work/no_config"
cp "$work/run/metrics.jsonl" "$work/run/config.ini" "$work/bad_diag/"
echo "not hdf5" >"$work/bad_diag/diagnostics.h5"
bad "damaged diagnostics.h5" "diagnostics.h5: not a kilolayer diagnostics file" "$work/bad_diag"
echo "plot_run: 5 PNGs drawn; 5 bad run directories refused, one line each"
