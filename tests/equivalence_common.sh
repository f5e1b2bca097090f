# Shared by the layout-equivalence tests: a work folder with byte-level shards of the GPL, a small
# config, and run NAME DP PP [OVERRIDES...], which trains it under mpirun with dp x pp ranks.
#   source equivalence_common.sh BIN LAYERS MPIRUN [MPIRUN_FLAGS...]
bin=$1
layers=$2
shift 2
mpirun=("$@")
work=$(mktemp -d); [ -n "${KL_KEEP:-}" ] && echo "work: $work"
trap '[ -n "${KL_KEEP:-}" ] || rm -rf "$work"' EXIT
"$bin" data --out "$work/data" --block 256 /usr/share/common-licenses/GPL-3 >/dev/null || exit 1
cat >"$work/base.ini" <<INI
[model]
layers = $layers
d_model = 32
heads = 2
seq_len = 32
[train]
steps = 20
global_batch = 16
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
[checkpoint]
dir = none
[run]
threads = 1
log_every = 1
save_final_params = true
INI

run() {  # run NAME DP PP OVERRIDES...
  local name=$1 dp=$2 pp=$3
  shift 3
  "${mpirun[@]}" -np $((dp * pp)) "$bin" train --config "$work/base.ini" --parallel.dp="$dp" --parallel.pp="$pp" \
    --run.dir="$work/$name" "$@" >"$work/$name.log" 2>&1 || { echo "FAIL: $name exited $?"; cat "$work/$name.log"; return 1; }
}
