#!/usr/bin/env bash
# The checks for a lent GPU machine, in one run from the repository root (about 15 minutes of device
# time in all, the machine's start included; one command may run 10): it builds what needs only
# nvcc, CMake, the CUDA libraries and the NCCL of python3's nvidia-nccl wheel, then runs each check
# with its own time limit, most important first, and ends with one table:
#
#   step | result (PASS, FAIL, SKIP) | seconds | detail
#
#   gpu          nvidia-smi -L
#   build        launch/build.sh into build-gpu/: -DKL_MPI=OFF -DKL_HDF5=OFF -DKL_BOOST=OFF -DKL_BLAS=OFF
#                -DKL_ONEDNN=OFF -DKL_SENTENCEPIECE=OFF -DKL_CUDA=ON -DKL_PORTABLE=ON, every core
#   libraries    every shared library of the binaries resolves (cudart, cuBLASLt, NCCL)
#   gpu-ops      kl_gpu_tests' kernel tests against the CPU, with KL_CUDA_SYNC=1
#   gpu-model    the rest of kl_gpu_tests (model steps, training through the library)
#   backend      the one model walk on the CUDA backends: kl_backend_tests, or the *Backend* tests of
#                another binary; SKIP when no binary has them
#   data         token shards of this repository's own text (the machine has no corpus)
#   loss-fp32    20 steps of a small model, run.device = cpu and cuda: losses within 1e-4 relative
#   loss-bf16    the same in bf16 against the CPU's fp32: within 2e-2 relative
#   determinism  the fp32 cuda run again: the same losses and final parameters, bit for bit
#   nccl         kl_nccl_tests, one process (no mpirun); SKIP when the build left it out
#   memcheck     compute-sanitizer --tool memcheck on the kernel tests (SKIP when it cannot run)
#   bench        bench/gpu_vs_torch.sh at 16 layers: tokens/s and MFU beside PyTorch
#
# Exit 0 when no step failed (SKIPs are listed, with their reason), 1 otherwise, 77 at once when the
# machine has no GPU. Everything printed also goes to ${OUT:-.}/device_check/ (log.txt, summary.txt
# and one log per step), which the device tool brings back.
#
# GoogleTest: the machine has none. CMake builds it from sources in build-gtest-src/ when they are
# there: before the loan, `cp -r /usr/src/googletest build-gtest-src` on a Debian machine and pass
# build-gtest-src in the run's carry list. Without them the gtest steps FAIL, saying so, and the
# trainer's steps still run.
#
# KL_CHECK_DEADLINE_S (default 560): seconds from the start after which no step begins and each
# running step is cut, so that the table is printed inside one 600-second command.
# KL_CHECK_BUILD_DIR (default build-gpu): the build folder (another one reuses its build).
set -u
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-.}/device_check
mkdir -p "$out"
out=$(cd "$out" && pwd)
: >"$out/log.txt"
exec > >(tee -a "$out/log.txt") 2>&1
deadline=${KL_CHECK_DEADLINE_S:-560}
build=${KL_CHECK_BUILD_DIR:-build-gpu}  # another folder: reuse a build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "device_check: no nvidia-smi on this machine: no GPU to check (exit 77)"
  exit 77
fi
gpus=$(nvidia-smi -L 2>&1)
if ! grep -q '^GPU' <<<"$gpus"; then
  echo "device_check: nvidia-smi lists no GPU ($gpus): nothing to check (exit 77)"
  exit 77
fi

# --- the step runner ---
names=() results=() times=() details=()
failed=0
# step NAME SECONDS FUNCTION: runs FUNCTION with $limit = SECONDS or what is left before the
# deadline, if less. FUNCTION returns 0 (PASS), 77 (SKIP) or anything else (FAIL) and sets $detail;
# its output goes to $out/NAME.log, whose tail is shown when it fails.
step() {
  local name=$1 want=$2 fn=$3 left=$((deadline - SECONDS)) start=$SECONDS status=0 result
  detail=""
  if [ "$left" -lt 15 ]; then
    result=SKIP detail="out of time (KL_CHECK_DEADLINE_S=$deadline)"
  else
    limit=$((want < left ? want : left))
    echo "=== $name (at most ${limit} s)"
    "$fn" >"$out/$name.log" 2>&1 || status=$?
    case $status in
      0) result=PASS ;;
      77) result=SKIP ;;
      *)
        result=FAIL
        [ "$status" = 124 ] && detail="timed out after ${limit} s; $detail"
        tail -n 25 "$out/$name.log" | sed 's/^/    /'
        ;;
    esac
  fi
  [ "$result" = FAIL ] && failed=$((failed + 1))
  names+=("$name") results+=("$result") times+=($((SECONDS - start))) details+=("$detail")
  printf '%-12s %-4s %4d s  %s\n' "$name" "$result" $((SECONDS - start)) "$detail"
}

# gtest_run BINARY FILTER [ENV=VALUE...]: runs the tests FILTER selects; PASS only when some ran and
# none failed or skipped (a skip here means the test found no usable GPU on a GPU machine).
gtest_run() {
  local bin=$1 filter=$2 log="$work/gtest.$RANDOM" status=0 passed skipped failures
  shift 2
  env "$@" timeout "$limit" "$bin" --gtest_filter="$filter" >"$log" 2>&1 || status=$?
  cat "$log"
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  failures=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  detail="${passed:-0} passed, ${skipped:-0} skipped, ${failures:-0} failed"
  [ "$status" = 124 ] && return 124
  [ "$status" = 0 ] && [ "${passed:-0}" -gt 0 ] && [ "${skipped:-0}" = 0 ] && return 0
  if [ "${skipped:-0}" != 0 ]; then
    detail="$detail; skipped on a GPU machine: $(grep -m1 -o 'no CUDA device.*' "$log")"
  elif [ "$status" = 0 ] && [ "${passed:-0}" = 0 ]; then
    detail="no test ran: the filter '$filter' matches nothing"
  fi
  return 1
}

# The full names (Suite.test) BINARY lists for FILTER, one a line.
gtest_list() {
  "$1" --gtest_filter="$2" --gtest_list_tests 2>/dev/null |
    awk '/^[^ ]/ {suite = $1} /^  [^ ]/ {print suite $1}'
}

# --- the steps ---
gpu_step() {
  echo "$gpus"
  detail=$(head -1 <<<"$gpus")
}

cmake_options=(-DKL_MPI=OFF -DKL_HDF5=OFF -DKL_BOOST=OFF -DKL_BLAS=OFF -DKL_ONEDNN=OFF -DKL_SENTENCEPIECE=OFF -DKL_CUDA=ON -DKL_PORTABLE=ON)
gtest_missing=0
build_step() {
  local status=0
  # The user's path: launch/build.sh, which installs nothing when libraries are switched off.
  KL_BUILD_DIR=$build timeout "$limit" ./launch/build.sh "${cmake_options[@]}" || status=$?
  if [ "$status" != 0 ] && grep -q "GoogleTest not found" "$build/configure.log" 2>/dev/null; then
    local left=$((limit - (SECONDS - start_build)))
    gtest_missing=1 status=0
    KL_BUILD_DIR=$build timeout "$((left > 1 ? left : 1))" ./launch/build.sh "${cmake_options[@]}" \
      -DKL_BUILD_TESTS=OFF || status=$?
  fi
  detail="nvcc $(sed -n 's/.*CUDA backend on (nvcc \([^,]*\),.*NCCL \(.*\))/\1, NCCL \2/p' "$build/configure.log" 2>/dev/null)"
  [ "$gtest_missing" = 1 ] && detail="$detail; NO GoogleTest (copy /usr/src/googletest to build-gtest-src/ and carry it): gtest steps fail"
  if [ "$status" != 0 ] && [ ! -x "$build/kilolayer" ]; then
    detail="$detail; build failed: $(grep -m1 -E 'Error|error:' "$build/configure.log" 2>/dev/null | cut -c1-160)"
  fi
  return "$status"
}

libraries_step() {
  local missing="" bin
  for bin in "$build/kilolayer" "$build"/tests/kl_*_tests; do
    [ -x "$bin" ] || continue
    echo "== $bin"
    ldd "$bin" | grep -E 'cudart|cublas|nccl|not found'
    missing+=$(ldd "$bin" | grep 'not found' | awk -v b="$(basename "$bin")" '{print b ": " $1 " "}')
  done
  [ -x "$build/kilolayer" ] || { detail="no $build/kilolayer"; return 1; }
  if [ -n "$missing" ]; then detail="not found: $missing"; return 1; fi
  detail=$(ldd "$build/kilolayer" | awk '/nccl/ {print "NCCL " $3}')
}

ops_filter='CudaOps*:CudaTest*:*Kernel*-*Model*:*Step*:*Training*:*Bf16*:*Backend*'
gpu_tests=$build/tests/kl_gpu_tests
need_gtests() {
  if [ "$gtest_missing" = 1 ]; then detail="GoogleTest missing: not built"; return 1; fi
  [ -x "$1" ] || { detail="$1 was not built"; return 1; }
}
ops_step() {
  need_gtests "$gpu_tests" || return 1
  gtest_run "$gpu_tests" "$ops_filter" KL_CUDA_SYNC=1
}
model_step() {
  local rest
  need_gtests "$gpu_tests" || return 1
  # Every test of kl_gpu_tests that gpu-ops did not run: each runs once, whatever the names become.
  rest=$(comm -23 <(gtest_list "$gpu_tests" '*' | sort) <(gtest_list "$gpu_tests" "$ops_filter" | sort) | paste -sd:)
  [ -n "$rest" ] || { detail="no test of kl_gpu_tests outside gpu-ops"; return 77; }
  gtest_run "$gpu_tests" "$rest" KL_CUDA_SYNC=1
}
backend_step() {
  local bin
  [ "$gtest_missing" = 1 ] && { detail="GoogleTest missing: not built"; return 1; }
  if [ -x "$build/tests/kl_backend_tests" ]; then
    gtest_run "$build/tests/kl_backend_tests" '*'
    return
  fi
  for bin in "$build"/tests/kl_*tests; do
    if [ -x "$bin" ] && [ -n "$(gtest_list "$bin" '*Backend*')" ]; then
      gtest_run "$bin" '*Backend*'
      return
    fi
  done
  detail="no kl_backend_tests and no *Backend* tests in $build/tests: not built yet"
  return 77
}

data_step() {
  local texts
  mapfile -t texts < <(find README.md docs src models comm tests tools bench launch configs -type f \
    \( -name '*.md' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.py' -o -name '*.sh' \) | sort)
  timeout "$limit" "$build/kilolayer" data --out "$work/data" "${texts[@]}" >"$work/data.txt" || return 1
  cat "$work/data.txt"
  detail="${#texts[@]} files: $(sed 's|[^ ]*/||g' "$work/data.txt")"
  cat >"$work/tiny.ini" <<INI
[model]
layers = 4
d_model = 128
heads = 4
seq_len = 64
vocab = 256
dropout = 0.1
[train]
steps = 20
global_batch = 8
micro_batch = 4
lr = 0.001
min_lr = 0.0001
warmup = 5
eval_every = 0
eval_batches = 2
[data]
train = $work/data/train.bin
val = $work/data/val.bin
[checkpoint]
dir = none
[run]
log_every = 1
threads = 0
save_final_params = true
INI
}

# train NAME OVERRIDES...: the small model into $work/NAME.
train() {
  local name=$1
  shift
  [ -s "$work/tiny.ini" ] || { detail="no data (the data step failed)"; return 1; }
  echo "== $name: $*"
  timeout "$limit" "$build/kilolayer" train --config "$work/tiny.ini" --run.dir="$work/$name" "$@" || {
    local status=$?
    detail="$name: kilolayer train failed (exit $status)"
    return "$status"
  }
}

# compare A B TOLERANCE: the per-step losses of runs A and B, all 20 steps, within TOLERANCE
# relative (0: identical). Sets $detail to the worst step.
compare() {
  local verdict status=0
  verdict=$(python3 - "$work/$1/metrics.jsonl" "$work/$2/metrics.jsonl" "$3" <<'PY'
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
steps = list(range(1, 21))
if sorted(a) != steps or sorted(b) != steps:
    print(f"steps logged: {sorted(a)} and {sorted(b)}, wanted 1..20"); sys.exit(1)
worst = max(steps, key=lambda s: abs(a[s] - b[s]) / abs(b[s]))
rel = abs(a[worst] - b[worst]) / abs(b[worst])
print(f"worst step {worst}: {a[worst]:.9g} vs {b[worst]:.9g}, rel {rel:.2e} (limit {tol:g}); "
      f"loss {b[1]:.4f} -> {b[20]:.4f}")
sys.exit(0 if (rel <= tol if tol > 0 else all(a[s] == b[s] for s in steps)) else 1)
PY
  ) || status=1
  echo "$verdict"
  detail="$verdict"
  return "$status"
}

loss_fp32_step() {
  train cpu_fp32 --run.device=cpu && train cuda_fp32 --run.device=cuda --run.precision=fp32 || return 1
  compare cuda_fp32 cpu_fp32 1e-4
}
loss_bf16_step() {
  [ -s "$work/cpu_fp32/metrics.jsonl" ] || train cpu_fp32 --run.device=cpu || return 1
  train cuda_bf16 --run.device=cuda --run.precision=bf16 || return 1
  compare cuda_bf16 cpu_fp32 2e-2
}
determinism_step() {
  [ -s "$work/cuda_fp32/metrics.jsonl" ] || train cuda_fp32 --run.device=cuda --run.precision=fp32 || return 1
  train cuda_fp32_again --run.device=cuda --run.precision=fp32 || return 1
  compare cuda_fp32_again cuda_fp32 0 || return 1
  if cmp -s "$work/cuda_fp32/final_params.f32" "$work/cuda_fp32_again/final_params.f32"; then
    detail="losses and final_params.f32 ($(wc -c <"$work/cuda_fp32/final_params.f32") bytes) identical"
  else
    detail="losses identical, final_params.f32 differ: $(cmp "$work/cuda_fp32/final_params.f32" "$work/cuda_fp32_again/final_params.f32" 2>&1 | head -1)"
    return 1
  fi
}

nccl_step() {
  local bin=$build/tests/kl_nccl_tests status=0
  if [ ! -x "$bin" ]; then
    detail="kl_nccl_tests not built (configure: $(grep -m1 -o 'kl_nccl_tests left out.*' "$build/configure.log" 2>/dev/null || echo '?'))"
    return 77
  fi
  timeout "$limit" "$bin" >"$work/nccl.log" 2>&1 || status=$?
  cat "$work/nccl.log"
  case $status in
    0) detail="every collective and the send/receive ring on one rank" ;;
    77) detail="skipped itself on a GPU machine: $(grep -m1 SKIPPED "$work/nccl.log")"; return 1 ;;
    *) detail="exit $status"; return "$status" ;;
  esac
}

memcheck_step() {
  local sanitizer errors status=0
  need_gtests "$gpu_tests" || return 1
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  [ -n "$sanitizer" ] || { detail="compute-sanitizer not found"; return 77; }
  timeout "$limit" "$sanitizer" --tool memcheck "$gpu_tests" --gtest_filter="$ops_filter" >"$work/memcheck.log" 2>&1 ||
    status=$?
  tail -n 200 "$work/memcheck.log"
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$work/memcheck.log" | tail -1)
  if [ -z "$errors" ]; then
    [ "$status" = 124 ] && return 124
    detail="compute-sanitizer did not run the tests (exit $status): $(grep -m1 -i 'error' "$work/memcheck.log" | cut -c1-160)"
    return 77
  fi
  detail="$errors memcheck errors; $(grep -c '^\[       OK \]' "$work/memcheck.log") tests ran under it"
  [ "$errors" = 0 ] && [ "$status" = 0 ]
}

bench_step() {
  local status=0
  KL_BUILD_DIR=$build KL_PYTHON=python3 timeout "$limit" bench/gpu_vs_torch.sh --layers 16 --steps 4 --reps 1 \
    >"$work/bench.log" 2>&1 || status=$?
  cat "$work/bench.log"
  [ "$status" = 77 ] && { detail=$(tail -1 "$work/bench.log"); return 77; }
  detail=$(grep -E '^(kilolayer|pytorch|ratio)' "$work/bench.log" | tr -s ' ' | paste -sd';')
  return "$status"
}

echo "device_check: $(head -1 <<<"$gpus"); results in $out"
step gpu 20 gpu_step
start_build=$SECONDS
step build 300 build_step
step libraries 30 libraries_step
step gpu-ops 90 ops_step
step gpu-model 120 model_step
step backend 90 backend_step
step data 30 data_step
step loss-fp32 90 loss_fp32_step
step loss-bf16 60 loss_bf16_step
step determinism 60 determinism_step
step nccl 60 nccl_step
step memcheck 120 memcheck_step
step bench 150 bench_step

{
  echo
  printf '| %-11s | %-6s | %7s | %s\n' step result seconds detail
  printf '|-------------|--------|---------|--------\n'
  for i in "${!names[@]}"; do
    printf '| %-11s | %-6s | %7s | %s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}" "${details[$i]}"
  done
  echo
  echo "device_check: $(printf '%s\n' "${results[@]}" | grep -c PASS) passed," \
       "$(printf '%s\n' "${results[@]}" | grep -c SKIP) skipped, $failed failed in $SECONDS s"
} | tee "$out/summary.txt"
[ "$failed" = 0 ]
