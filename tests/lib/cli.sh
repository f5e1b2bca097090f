# Shared by the command-line test scripts (sourced, not run): lib/common.sh, pass and fail counters,
# and the check every refusal must meet.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
passed=0 failed=0

# expect_error NAME PATTERN -- COMMAND...: the command exits 2, its stderr matches PATTERN, and it
# wrote no metrics (nothing trained; the configs' run.dir is $work/run, cleared first).
expect_error() {
  local name=$1 pattern=$2 err status
  shift 3
  rm -rf "$work/run"
  err=$("$@" 2>&1 >/dev/null)
  status=$?
  if [ "$status" -eq 2 ] && grep -q -- "$pattern" <<<"$err" && [ ! -e "$work/run/metrics.jsonl" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $name: exit $status, stderr: $err (wanted exit 2, /$pattern/ and no metrics)"
  fi
}

# check NAME COMMAND...: the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name"
  fi
}

# report SCRIPT: the counts; fails when anything did.
report() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
