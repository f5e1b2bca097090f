# Shared by the layout-equivalence tests: lib/common.sh's work folder with byte-level shards of the GPL, a small
# config, and run NAME DP PP [OVERRIDES...], which trains it under mpirun with dp x pp ranks.
#   source lib/equivalence.sh BIN LAYERS MPIRUN [MPIRUN_FLAGS...]
bin=$1
layers=$2
shift 2
mpirun=("$@")
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
make_shards "$bin" || exit 1
write_ini "$work/base.ini" model.layers="$layers" model.d_model=32 model.seq_len=32 \
  train.steps=20 train.global_batch=16 train.lr=0.003 train.warmup=5 train.eval_every=10 train.eval_batches=2 \
  parallel.bucket_mb=0.05 run.dir= run.log_every=1 run.save_final_params=true

run() {  # run NAME DP PP OVERRIDES...
  local name=$1 dp=$2 pp=$3
  shift 3
  "${mpirun[@]}" -np $((dp * pp)) "$bin" train --config "$work/base.ini" --parallel.dp="$dp" --parallel.pp="$pp" \
    --run.dir="$work/$name" "$@" >"$work/$name.log" 2>&1 || { echo "FAIL: $name exited $?"; cat "$work/$name.log"; return 1; }
}
