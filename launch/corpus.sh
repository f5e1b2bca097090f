#!/usr/bin/env bash
# The corpus, made into token shards under data/fortunes/ on first use: the fortune-mod quotations
# (Debian's fortunes package) plus the GNU GPL, plain English text every Debian machine can
# install. Byte-level tokens, every tenth 2 KiB block held out for validation. Needs build/kilolayer.
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/fortunes
if [ ! -s "$data/train.bin" ] || [ ! -s "$data/val.bin" ]; then
  mapfile -t texts < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
  build/kilolayer data --out "$data" "${texts[@]}" /usr/share/common-licenses/GPL-3
fi
