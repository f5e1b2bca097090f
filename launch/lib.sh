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

# kl_corpus_ini FILE [SECTION.KEY=VALUE ...]: the config the depth studies share (transfer_study.sh,
# fair_depth_study.sh, deeper_study.sh, sd_timing.sh): 2 heads, 64 tokens, no dropout, batches of 8
# sequences, validation only at the end (8 batches), launch/corpus.sh's shards, one thread a run;
# then the given settings, a later one replacing an earlier one of the same key.
kl_corpus_ini() {
  local file=$1
  shift
  printf '%s\n' model.heads=2 model.seq_len=64 model.dropout=0 train.global_batch=8 train.micro_batch=8 \
    train.eval_every=0 train.eval_batches=8 data.train=data/fortunes/train.bin data.val=data/fortunes/val.bin \
    run.threads=1 "$@" | awk '
    { eq = index($0, "="); key = substr($0, 1, eq - 1); dot = index(key, ".")
      section = substr(key, 1, dot - 1); name = substr(key, dot + 1)
      if (!(section in seen)) { seen[section] = 1; sections[++n] = section }
      if (!((section, name) in value)) names[section] = names[section] " " name
      value[section, name] = substr($0, eq + 1) }
    END { for (i = 1; i <= n; ++i) {
            s = sections[i]; printf "[%s]\n", s; k = split(substr(names[s], 2), list, " ")
            for (j = 1; j <= k; ++j) printf "%s = %s\n", list[j], value[s, list[j]] } }' >"$file"
}
