# Shared by every test script (sourced, not run): a work folder removed on exit, byte-level shards of
# a text, fail, and write_ini, the one writer of the small configs the scripts train.
#   source "$(dirname "$0")/../lib/common.sh"
# KL_KEEP=1 keeps the work folder and prints where it is. A script that needs its own folder and
# cleanup (a mount, daemons) sets $work and its trap before sourcing this.
if [ -z "${work:-}" ]; then
  work=$(mktemp -d)
  if [ -n "${KL_KEEP:-}" ]; then echo "work: $work"; fi
  trap '[ -n "${KL_KEEP:-}" ] || rm -rf "$work"' EXIT
fi

# fail MESSAGE: the test fails, saying why.
fail() { echo "FAIL: $*"; exit 1; }

# make_shards BIN [DIR [BLOCK [TEXT...]]]: byte-level train/val shards of TEXT (default: the GPL,
# which every Debian has) in DIR (default $work/data), val every BLOCK-th block (default 256).
make_shards() {
  local bin=$1 dir=${2:-$work/data} block=${3:-256}
  shift $(($# < 3 ? $# : 3))
  [ $# -gt 0 ] || set -- /usr/share/common-licenses/GPL-3
  "$bin" data --out "$dir" --block "$block" "$@" >/dev/null
}

# write_ini FILE [section.key=value ...]: a tiny config (2 layers, d_model 16, 2 steps of 2 sequences
# of 8 tokens, the shards of make_shards, run.dir $work/run, no checkpoints, 1 thread) with the
# given keys set; section.key= (empty) leaves the key out. Sections and keys keep the order of first
# appearance, defaults first.
write_ini() {
  local file=$1 kv key section
  shift
  local -A value=()
  local -a keys=()
  for kv in model.layers=2 model.d_model=16 model.heads=2 model.seq_len=8 \
            train.steps=2 train.global_batch=2 train.micro_batch=2 \
            data.train="$work/data/train.bin" data.val="$work/data/val.bin" \
            checkpoint.dir=none run.dir="$work/run" run.threads=1 "$@"; do
    key=${kv%%=*}
    if [[ $kv != *=* || $key != *.* ]]; then
      echo "write_ini: '$kv' is not section.key=value" >&2
      return 1
    fi
    [ -n "${value[$key]+set}" ] || keys+=("$key")
    value[$key]=${kv#*=}
  done
  local -a sections=()
  for key in "${keys[@]}"; do
    section=${key%%.*}
    [[ " ${sections[*]} " == *" $section "* ]] || sections+=("$section")
  done
  {
    for section in "${sections[@]}"; do
      echo "[$section]"
      for key in "${keys[@]}"; do
        if [ "${key%%.*}" = "$section" ] && [ -n "${value[$key]}" ]; then
          echo "${key#*.} = ${value[$key]}"
        fi
      done
    done
  } >"$file"
}
