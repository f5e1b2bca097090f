#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address and undefined-behaviour sanitizers) and runs each
# for RUNS inputs (default 20000) from a fixed seed, so that CI repeats the same inputs, starting
# from a seed corpus: the configs in configs/ for the config parser, a real shard and its truncations
# for the shard reader, a real (tiny) checkpoint for the checkpoint reader. An input running over 10 s counts as a hang. Exit 1 on any finding (the
# input is kept and named); exit 77 (a skip, shown by CTest) when clang's libFuzzer is missing.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR KILOLAYER_BIN [RUNS] [SEED]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1/fuzz"
out=$(cd "$1/fuzz" && pwd) bin=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") runs=${3:-20000} seed=${4:-1}
mkdir -p "$out"
compiler=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$compiler" ] || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$compiler" -x c++ -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
  echo "SKIPPED: clang++ with libFuzzer not found (Debian: clang, libclang-rt-14-dev)"
  exit 77
fi
mpi_compile=$(mpicxx -showme:compile) mpi_link=$(mpicxx -showme:link)
# The product build's configuration (MPI, HDF5, Boost): the config fuzzer reads through Boost.
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$root"
       -DKL_HAVE_MPI -DKL_HAVE_HDF5 -DKL_HAVE_BOOST)
build() {  # NAME SOURCES... -- LIBS...
  local name=$1
  shift
  # shellcheck disable=SC2086
  "$compiler" "${flags[@]}" $mpi_compile "$@" $mpi_link -o "$out/$name" 2>"$out/$name.build.log" ||
    { echo "FAIL: cannot build $name: $(tail -5 "$out/$name.build.log")"; exit 1; }
}
build fuzz_config "$root/tests/fuzz/fuzz_config.cpp" "$root/src/config/config.cpp" "$root/src/util/error.cpp" \
  -lboost_program_options
build fuzz_shard "$root/tests/fuzz/fuzz_shard.cpp" "$root"/src/data/{shard,dataset}.cpp "$root/src/util/error.cpp"
hdf5_compile=$(pkg-config --cflags hdf5-openmpi) hdf5_link=$(pkg-config --libs hdf5-openmpi)
# shellcheck disable=SC2086
build fuzz_checkpoint "$root/tests/fuzz/fuzz_checkpoint.cpp" "$root"/src/checkpoint/{checkpoint,h5,index}.cpp \
  "$root/src/train/spike.cpp" "$root"/src/data/{fingerprint,dataset,shard}.cpp \
  "$root/src/config/config.cpp" "$root/models/params.cpp" "$root"/comm/{comm,mpi_comm,watchdog,grid}.cpp \
  "$root/src/util/error.cpp" $hdf5_compile -lboost_program_options $hdf5_link -lz

seeds=$out/seeds
rm -rf "$seeds" && mkdir -p "$seeds/config" "$seeds/shard" "$seeds/checkpoint"
cp "$root"/configs/*.ini "$seeds/config/"
head -c 3000 /usr/share/common-licenses/GPL-3 >"$out/text.txt"
"$bin" data --out "$out/data" --block 256 "$out/text.txt" >/dev/null || exit 1
cp "$out/data/val.bin" "$seeds/shard/val.bin"
head -c 1024 "$out/data/val.bin" >"$seeds/shard/header_only.bin"
head -c 1100 "$out/data/val.bin" >"$seeds/shard/truncated.bin"
# A real checkpoint of a tiny model: whole (mode byte 0) and past its seal (mode byte 1, which the
# target reseals so that mutations reach HDF5 and the readers).
cat >"$out/tiny.ini" <<EOF
[model]
layers = 1
d_model = 4
heads = 1
seq_len = 4
vocab = 256
[train]
steps = 1
global_batch = 1
micro_batch = 1
[data]
train = $out/data/train.bin
val = $out/data/val.bin
[checkpoint]
dir = $out/tiny_ckpt
resume = never
[run]
dir = $out/tiny_run
threads = 1
save_final_params = false
EOF
rm -rf "$out/tiny_ckpt" "$out/tiny_run"
"$bin" train --config "$out/tiny.ini" >"$out/tiny.log" 2>&1 || { echo "FAIL: tiny checkpoint: $(tail -3 "$out/tiny.log")"; exit 1; }
checkpoint=$out/tiny_ckpt/step_00000001/checkpoint.h5
{ printf '\0'; cat "$checkpoint"; } >"$seeds/checkpoint/whole"
{ printf '\1'; tail -c +513 "$checkpoint"; } >"$seeds/checkpoint/past_seal"
# Inputs that once found a problem run first, every time (tests/fuzz/regressions/<target>_*).
for found in "$root"/tests/fuzz/regressions/*; do
  name=${found##*/}
  cp "$found" "$seeds/${name%%_*}/"
done

max_len() { [ "$1" = fuzz_checkpoint ] && echo $(( $(stat -c %s "$checkpoint") + 1024 )) || echo 4096; }
status=0
for name in fuzz_config fuzz_shard fuzz_checkpoint; do
  n=$runs
  [ "$name" = fuzz_checkpoint ] && n=$(( runs / 40 ))  # each input is a whole HDF5 file: ~100x slower
  corpus=$seeds/${name#fuzz_}
  rm -rf "$out/corpus_$name" && cp -r "$corpus" "$out/corpus_$name"  # the fuzzer adds to it
  start=$(date +%s)
  # allocator_may_return_null: an impossible request (HDF5 sizing a buffer from a forged length of
  # about 2^64 bytes) gets NULL, as from glibc, and HDF5 reports the failure; one below ASan's 1 TB
  # limit but above libFuzzer's -malloc_limit_mb (2 GB) is still a finding.
  (cd "$out" && TMPDIR=$out ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "./$name" -runs="$n" -seed="$seed" -timeout=10 \
    -max_total_time=240 -max_len="$(max_len "$name")" -artifact_prefix="$out/$name-" "$out/corpus_$name" >"$out/$name.log" 2>&1)
  result=$?
  took=$(( $(date +%s) - start ))
  if [ "$result" -ne 0 ]; then
    echo "FAIL: $name found a problem (exit $result); input kept as $(ls "$out/$name-"* 2>/dev/null | head -1):"
    grep -E "ERROR|runtime error|SUMMARY" "$out/$name.log" | head -5
    status=1
  else
    echo "$name: $n inputs (seed $seed) in ${took}s, no crash, hang or sanitizer report"
  fi
done
exit $status
