#!/usr/bin/env bash
# Runs one libFuzzer target for a number of seconds, starting from its seed corpus.
#   scripts/fuzz.sh TARGET SECONDS      TARGET: safetensors | json_config | prompts_file | tokenizer
#   scripts/fuzz.sh all SECONDS         every target, VI_FUZZ_JOBS (default nproc) at a time
# Builds with clang (ASan + UBSan + libFuzzer) in build-fuzz/. Prints the executions run;
# exits non-zero on a crash, leaving the reproducer in build-fuzz/crashes/. A libFuzzer process
# uses one core, so on a 2-core CI machine two targets run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
build=${VI_FUZZ_BUILD_DIR:-build-fuzz}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)" >&2; exit 1; }
cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$target")
[ "$target" = all ] && targets=($(cd tests/fuzz && ls fuzz_*.cpp | sed 's/^fuzz_//; s/\.cpp$//'))
summary="$build/summary.txt"  # one line per target (and each crash's reproducer), for test.sh's summary
cmake --build "$build" --target "${targets[@]/#/fuzz_}" >/dev/null

# fuzz_one TARGET: runs it; its summary lines go to $build/summary-TARGET.txt.
fuzz_one() {
  local t=$1 log="$build/fuzz_$1.log" out="$build/summary-$1.txt"
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  touch "$build/crashes/$t.started"
  # New inputs go to the build's corpus; the seeds in tests/fuzz/corpus stay untouched.
  if "$build/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$build/crashes/$t/" \
      -rss_limit_mb=2048 "$build/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${runs:-?} executions in ${seconds} s, no crash" >"$out"
    return 0
  fi
  tail -30 "$log"
  { echo "fuzz $t: CRASH (see $log and $build/crashes/$t/)"
    grep -m1 -E '^SUMMARY|ERROR: libFuzzer' "$log" || true
    # The reproducer, so that a crash on a CI machine can be replayed here:
    #   echo '<base64>' | base64 -d > crash && build-fuzz/fuzz_TARGET crash
    for f in $(find "$build/crashes/$t" -type f -newer "$build/crashes/$t.started"); do
      echo "reproducer $(basename "$f") ($(stat -c %s "$f") bytes), base64:"
      head -c 65536 "$f" | base64 -w 0
      echo
    done; } >"$out"
  return 1
}

jobs=${VI_FUZZ_JOBS:-$(nproc)}
rm -f "$build"/summary-*.txt
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  fuzz_one "$t" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
: >"$summary"
for t in "${targets[@]}"; do cat "$build/summary-$t.txt" 2>/dev/null | tee -a "$summary" || echo "fuzz $t: no result" | tee -a "$summary"; done
exit $status
