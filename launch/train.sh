#!/usr/bin/env bash
# The main job: installs what is missing, builds, makes the corpus into token shards on first use,
# and trains configs/default.ini (a 128-layer pre-norm model). Extra arguments are config overrides,
# e.g. ./launch/train.sh --train.steps=50. KL_DP=N runs N data-parallel ranks under mpirun, the
# cores shared among them.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/build.sh >/dev/null

# The corpus: the fortune-mod quotations (Debian's fortunes package) plus the GNU GPL, plain English
# text every Debian machine can install. Byte-level tokens, every tenth 2 KiB block held out.
data=data/fortunes
if [ ! -s "$data/train.bin" ] || [ ! -s "$data/val.bin" ]; then
  mapfile -t texts < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
  build/kilolayer data --out "$data" "${texts[@]}" /usr/share/common-licenses/GPL-3
fi
ranks=${KL_DP:-1}
if [ "$ranks" -gt 1 ]; then
  threads=$(( $(nproc) / ranks ))
  [ "$threads" -ge 1 ] || threads=1
  mpirun=(mpirun --oversubscribe -np "$ranks")
  [ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
  extra=()
  if [[ " $* " != *" --train.micro_batch"* ]]; then  # each rank's share of the config's batch
    global=$(sed -n 's/^global_batch *= *//p' configs/default.ini)
    extra+=(--train.micro_batch=$(( global / ranks )))
  fi
  exec "${mpirun[@]}" build/kilolayer train --config configs/default.ini --parallel.dp="$ranks" \
    --run.threads="$threads" "${extra[@]}" "$@"
fi
exec build/kilolayer train --config configs/default.ini "$@"
