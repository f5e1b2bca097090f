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
