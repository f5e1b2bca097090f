#!/usr/bin/env bash
# The corpus, made into token shards on first use: the fortune-mod quotations (Debian's fortunes
# package) plus the GNU GPL, plain English text every Debian machine can install. Every tenth 2 KiB
# block is held out for validation. Two tokenizations:
#   data/fortunes_bpe2048/  the main job's (configs/default.ini): a SentencePiece BPE of 2048
#                           pieces trained on the training blocks (kilolayer tokenize), with its
#                           tokenizer.model and tokenizer.ini beside the shards
#   data/fortunes/          byte-level tokens (kilolayer data): the deep and depth-study configs'
# Needs build/kilolayer.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t texts < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
texts+=(/usr/share/common-licenses/GPL-3)
made() { [ -s "$1/train.bin" ] && [ -s "$1/val.bin" ] && [ -s "$1/tokenizer.ini" ]; }
made data/fortunes || build/kilolayer data --out data/fortunes "${texts[@]}"
made data/fortunes_bpe2048 || build/kilolayer tokenize --out data/fortunes_bpe2048 --vocab 2048 "${texts[@]}"
