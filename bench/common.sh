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
# folder (removed on exit) in $work with byte-level shards of English text in $work/data (the GPL,
# or where that is missing, as on a lent GPU machine, this repository's own text files), and sets
# $data_ini to their [data] section.
#   prepare_workdir [BIN]
prepare_workdir() {
  local bin=${1:-build/kilolayer} texts
  [ -n "${1:-}" ] || { [ -x build/kilolayer ] && [ -x build/kl_sgemm_peak ]; } || ./launch/build.sh >/dev/null
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if [ -r /usr/share/common-licenses/GPL-3 ]; then
    texts=(/usr/share/common-licenses/GPL-3)
  else
    mapfile -t texts < <(find README.md docs -name '*.md' -type f 2>/dev/null | sort)
  fi
  "$bin" data --out "$work/data" --block 256 "${texts[@]}" >/dev/null
  data_ini=$(printf '[data]\ntrain = %s\nval = %s' "$work/data/train.bin" "$work/data/val.bin")
}

# Writes $work/bench.ini for the benchmark's model and batch ($layers, $d_model, $heads, $seq_len,
# $vocab, $steps, $batch, $micro_batch if set, else $batch, $dropout if set, else 0.1) on $data_ini, without checkpoints or
# evaluation, run.dir $work/run. Each argument is one more line (sections may repeat: the reader
# merges them), e.g. write_bench_ini "[run]" "threads = 2".
write_bench_ini() {
  {
    printf '[model]\nlayers = %s\nd_model = %s\nheads = %s\nseq_len = %s\nvocab = %s\ndropout = %s\n' \
      "$layers" "$d_model" "$heads" "$seq_len" "$vocab" "${dropout:-0.1}"
    printf '[train]\nsteps = %s\nglobal_batch = %s\nmicro_batch = %s\neval_every = 0\neval_batches = 1\n' \
      "$steps" "$batch" "${micro_batch:-$batch}"
    printf '%s\n[checkpoint]\ndir = none\n[run]\ndir = %s\n' "$data_ini" "$work/run"
    printf '%s\n' "$@"
  } >"$work/bench.ini"
}

# The median tokens/s of the last run's steps after the first (warm-up: page faults, thread start).
run_tokens_per_s() { tail -n +2 "$work/run/metrics.jsonl" | sed 's/.*"tokens_per_s":\([^,}]*\).*/\1/' | median; }
