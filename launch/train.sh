#!/usr/bin/env bash
# The main job: installs what is missing, builds, makes the corpus into token shards on first use,
# and trains configs/default.ini (a 128-layer pre-norm model). Extra arguments are config overrides,
# e.g. ./launch/train.sh --train.steps=50.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/build.sh >/dev/null

./launch/corpus.sh
# KL_DP=N data-parallel ranks x KL_PP=M pipeline stages under mpirun, the cores shared among them.
# --config FILE picks another config than configs/default.ini.
config=configs/default.ini
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --config=*) config=${1#--config=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
dp=${KL_DP:-1} pp=${KL_PP:-1}
ranks=$(( dp * pp ))
if [ "$ranks" -gt 1 ]; then
  threads=$(( $(nproc) / ranks ))
  [ "$threads" -ge 1 ] || threads=1
  mpirun=(mpirun --oversubscribe -np "$ranks")
  [ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
  extra=()
  if [[ " ${args[*]} " != *" --train.micro_batch"* ]]; then
    # Each replica's share of the config's batch; a pipeline gets 2 micro-batches per stage.
    global=$(sed -n 's/^global_batch *= *//p' "$config")
    micro=$(( global / (dp * (pp > 1 ? 2 * pp : 1)) ))
    [ "$micro" -ge 1 ] || micro=1
    extra+=(--train.micro_batch="$micro")
  fi
  exec "${mpirun[@]}" build/kilolayer train --config "$config" --parallel.dp="$dp" --parallel.pp="$pp" \
    --run.threads="$threads" "${extra[@]}" "${args[@]}"
fi
exec build/kilolayer train --config "$config" "${args[@]}"
