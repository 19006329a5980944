#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS (default 60) and fails if any of them crashes,
# leaks, hits undefined behaviour, times out on an input or fails one of its own checks.
#
#   FUZZ_SECONDS=300 tests/fuzz/run.sh [target...]     (after `cmake --build --preset fuzz`)
#
# Each target starts from its seed corpus (tests/fuzz/corpus/<target>/, read only) plus what
# earlier runs found (build-fuzz/fuzz-corpus/<target>/, kept between runs). A failing input is
# saved under build-fuzz/fuzz-artifacts/; reproduce it with `build-fuzz/<target> FILE`, and once
# fixed add it to the seed corpus as regression-<what> so the ordinary test build replays it.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_fuzzer config_fuzzer discovery_fuzzer)

max_len() {
  case "$1" in
    discovery_fuzzer) echo 65536 ;;
    *) echo 16384 ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  bin="$BUILD/$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is not built; run \`cmake --preset fuzz && cmake --build --preset fuzz\` (or \`make fuzz\`)" >&2
    exit 2
  fi
  work="$BUILD/fuzz-corpus/$t"
  artifacts="$BUILD/fuzz-artifacts"
  log="$BUILD/fuzz-$t.log"
  mkdir -p "$work" "$artifacts"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s (log: $log)"
  rc=0
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -timeout=25 \
    -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
    "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  # The last status line: "#N DONE cov: C ft: F corp: U/S ... exec/s: E ..."
  status=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -a -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(echo "$status" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
  ft=$(echo "$status" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
  corp=$(echo "$status" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || echo "?")
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc) after $execs inputs; the input is in $artifacts/:" >&2
    grep -a -E '_fuzzer: |ERROR: |SUMMARY: |^artifact_prefix|Test unit written' "$log" | head -n 12 >&2 || true
    failed+=("$t")
  else
    echo "fuzz: $t ok: $execs inputs, $rate exec/s, coverage $cov edges ($ft features), corpus $corp inputs"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
