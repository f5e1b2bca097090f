#!/usr/bin/env bash
# Data parallelism under a real mpirun reproduces the single-process run: for the same global
# batch, dp in {1, 2, 4} (and ZeRO-1) give per-step losses equal within 1e-5 relative for 20 steps
# and the same final parameters, with dropout 0 and 0.1.
#   tests/dp_equivalence.sh BIN MPIRUN [MPIRUN_FLAGS...]
set -u
bin=$1
shift
mpirun=("$@")
work=$(mktemp -d); [ -n "${KL_KEEP:-}" ] && echo "work: $work"
trap '[ -n "${KL_KEEP:-}" ] || rm -rf "$work"' EXIT
"$bin" data --out "$work/data" --block 256 /usr/share/common-licenses/GPL-3 >/dev/null || exit 1
cat >"$work/dp.ini" <<INI
[model]
layers = 4
d_model = 32
heads = 2
seq_len = 32
[train]
steps = 20
global_batch = 8
micro_batch = 2
lr = 0.003
warmup = 5
eval_every = 10
eval_batches = 2
[data]
train = $work/data/train.bin
val = $work/data/val.bin
[parallel]
bucket_mb = 0.05
[run]
threads = 1
log_every = 1
save_final_params = true
INI

run() {  # run NAME RANKS OVERRIDES...
  local name=$1 ranks=$2
  shift 2
  "${mpirun[@]}" -np "$ranks" "$bin" train --config "$work/dp.ini" --parallel.dp="$ranks" \
    --run.dir="$work/$name" "$@" >"$work/$name.log" 2>&1 || { echo "FAIL: $name exited $?"; cat "$work/$name.log"; return 1; }
}

status=0
for dropout in 0.0 0.1; do
  run "d${dropout}_dp1" 1 --model.dropout=$dropout || status=1
  run "d${dropout}_dp2" 2 --model.dropout=$dropout || status=1
  run "d${dropout}_dp4" 4 --model.dropout=$dropout || status=1
  run "d${dropout}_dp2_zero" 2 --model.dropout=$dropout --parallel.zero=1 || status=1
  run "d${dropout}_dp4_zero" 4 --model.dropout=$dropout --parallel.zero=1 || status=1
  run "d${dropout}_dp2_blocking" 2 --model.dropout=$dropout --parallel.overlap=false || status=1
done
[ "$status" -eq 0 ] || exit 1

/usr/bin/python3 - "$work" <<'PY'
import json, sys
import numpy as np
work = sys.argv[1]
passed = failed = 0
def losses(name):
    return [json.loads(l)["loss"] for l in open(f"{work}/{name}/metrics.jsonl")]
for dropout in ("0.0", "0.1"):
    ref_name = f"d{dropout}_dp1"
    ref, ref_params = losses(ref_name), np.fromfile(f"{work}/{ref_name}/final_params.f32", dtype=np.float32)
    assert len(ref) == 20, "the reference did not run 20 steps"
    for other in ("dp2", "dp4", "dp2_zero", "dp4_zero", "dp2_blocking"):
        name = f"d{dropout}_{other}"
        got = losses(name)
        worst = max(abs(a - b) / abs(b) for a, b in zip(got, ref))
        params = np.fromfile(f"{work}/{name}/final_params.f32", dtype=np.float32)
        n = min(len(params), len(ref_params))  # buffers are padded to a multiple of dp
        extra = np.abs(params[n:]).max(initial=0) + np.abs(ref_params[n:]).max(initial=0)
        # Parameters within 1e-5 + 1e-4 |p|: the sums run in another order, and AdamW turns
        # rounding-level differences in the gradient of a near-zero parameter into steps of up to lr.
        param_err = np.max(np.abs(params[:n] - ref_params[:n]) / (1e-5 + 1e-4 * np.abs(ref_params[:n])))
        ok = len(got) == 20 and worst <= 1e-5 and param_err <= 1.0 and extra == 0
        print(f"dropout {dropout} {other:13s}: worst loss rel diff {worst:.2e}, worst param diff {param_err:.2f} of tolerance "
              f"{'ok' if ok else 'FAIL'}")
        passed, failed = passed + ok, failed + (not ok)
print(f"dp_equivalence: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
