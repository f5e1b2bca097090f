# shellcheck shell=bash
# Shared by the launch scripts (source it; it defines functions only).

# kl_setting CONFIG KEY FALLBACK [ARGS...]: the value of KEY ("section.name") from the last
# --section.name=value among ARGS, else from CONFIG's [section], else FALLBACK.
kl_setting() {
  local config=$1 key=$2 fallback=$3 o value=""
  shift 3
  for o in "$@"; do
    case $o in --$key=*) value=${o#--$key=} ;; esac
  done
  if [ -z "$value" ]; then
    value=$(awk -v section="${key%%.*}" -v name="${key#*.}" '
      /^\[/ { in_section = ($0 == "[" section "]") }
      in_section && $1 == name && $2 == "=" { print $3 }' "$config" | tail -1)
  fi
  echo "${value:-$fallback}"
}

# kl_ranks CONFIG [ARGS...]: parallel.dp x parallel.pp, the MPI world size the run needs.
kl_ranks() {
  local config=$1
  shift
  echo $(( $(kl_setting "$config" parallel.dp 1 "$@") * $(kl_setting "$config" parallel.pp 1 "$@") ))
}
