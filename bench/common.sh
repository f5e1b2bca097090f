# Helpers shared by the benchmark scripts (sourced, not run).

# parse_options "name1 name2 ..." --name1 value ... : sets the shell variables of the allowed names.
parse_options() {
  local allowed=" $1 " key
  shift
  while [ $# -gt 0 ]; do
    key=${1#--}
    if [[ "$allowed" != *" $key "* ]] || [ $# -lt 2 ]; then
      echo "unknown option or missing value: $1 (options:$allowed)" >&2
      exit 2
    fi
    printf -v "$key" '%s' "$2"
    shift 2
  done
}

# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# Builds what is missing (unless BIN, a kilolayer binary of another build, is given), makes a work
# folder (removed on exit) in $work with byte-level shards of the GPL text in $work/data, and sets
# $data_ini to their [data] section.
#   prepare_workdir [BIN]
prepare_workdir() {
  local bin=${1:-build/kilolayer}
  [ -n "${1:-}" ] || { [ -x build/kilolayer ] && [ -x build/kl_sgemm_peak ]; } || ./launch/build.sh >/dev/null
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$bin" data --out "$work/data" --block 256 /usr/share/common-licenses/GPL-3 >/dev/null
  data_ini=$(printf '[data]\ntrain = %s\nval = %s' "$work/data/train.bin" "$work/data/val.bin")
}
