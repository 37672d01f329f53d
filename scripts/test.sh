#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (what CI runs): installs what is missing,
# then three stages, each run even if an earlier one failed; exits non-zero if any failed.
#   1. Release build, every ctest label except gpu/nccl/slow (unit, tiny, e2e, mpi).
#   2. Each libFuzzer target for VI_FUZZ_SECONDS (default 60) seconds (scripts/fuzz.sh).
#   3. ASan+UBSan build of the library and tests; the unit and tiny tests under it.
# Usage:
#   scripts/test.sh                 all three stages
#   scripts/test.sh --quick [args]  stage 1 only (extra args go to ctest)
#   scripts/test.sh --sanitize [args]  stage 3 only
# Environment: VI_BUILD_DIR (default build), VI_SANITIZE_BUILD_DIR (default build-sanitize),
# VI_JOBS (default nproc), VI_FUZZ_SECONDS.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --quick) mode=quick; shift ;;
  --sanitize) mode=sanitize; shift ;;
esac
jobs=${VI_JOBS:-$(nproc)}
fuzz_seconds=${VI_FUZZ_SECONDS:-60}

scripts/install_deps.sh || exit 1

results=()
failed=0
started=$(mktemp)  # logs older than this run are not reported in the summary
trap 'rm -f "$started"' EXIT
stage() {  # stage NAME COMMAND...: runs, times and records one stage
  local name=$1; shift
  local start=$(date +%s)
  echo "=== test.sh: $name"
  if "$@"; then results+=("$name: passed in $(( $(date +%s) - start )) s")
  else results+=("$name: FAILED after $(( $(date +%s) - start )) s"); failed=1; fi
}

build_and_test() {  # build_and_test DIR SANITIZE LABEL_ARGS... -- CTEST_ARGS...
  local dir=$1 sanitize=$2; shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVI_BUILD_TESTS=ON -DVI_SANITIZE="$sanitize" \
    || return 1
  local start=$(date +%s)
  cmake --build "$dir" -j "$jobs" || return 1
  echo "test.sh: build took $(( $(date +%s) - start )) s"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@")
}

if [ "$mode" = all ] || [ "$mode" = quick ]; then
  stage "release build + tests" build_and_test "${VI_BUILD_DIR:-build}" OFF --label-exclude 'gpu|nccl|slow' "$@"
fi
if [ "$mode" = all ]; then
  stage "fuzz ($fuzz_seconds s per target)" scripts/fuzz.sh all "$fuzz_seconds"
fi
if [ "$mode" = all ] || [ "$mode" = sanitize ]; then
  # Leak reports off: LibTorch keeps global allocations alive until exit.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  stage "ASan+UBSan build + unit and tiny tests" build_and_test "${VI_SANITIZE_BUILD_DIR:-build-sanitize}" ON \
    --label-regex 'unit|tiny' "$@"
fi

echo "=== test.sh summary"
printf '  %s\n' "${results[@]}"
# What failed, repeated here so that the end of a CI log says it.
for dir in "${VI_BUILD_DIR:-build}" "${VI_SANITIZE_BUILD_DIR:-build-sanitize}"; do
  failed_tests="$dir/Testing/Temporary/LastTestsFailed.log"
  if [ -s "$failed_tests" ] && [ "$failed_tests" -nt "$started" ]; then
    echo "  failed tests in $dir:"; sed 's/^/    /' "$failed_tests"
  fi
done
fuzz_summary="${VI_FUZZ_BUILD_DIR:-build-fuzz}/summary.txt"
if [ "$mode" = all ] && [ -f "$fuzz_summary" ]; then sed 's/^/  /' "$fuzz_summary"; fi
exit $failed
