#!/usr/bin/env bash
# Runs one libFuzzer target for a number of seconds, starting from its seed corpus.
#   scripts/fuzz.sh TARGET SECONDS      TARGET: safetensors | json_config | prompts_file | tokenizer
#   scripts/fuzz.sh all SECONDS         every target in turn
# Builds with clang (ASan + UBSan + libFuzzer) in build-fuzz/. Prints the executions run;
# exits non-zero on a crash, leaving the reproducer in build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
build=${VI_FUZZ_BUILD_DIR:-build-fuzz}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)" >&2; exit 1; }
cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$target")
[ "$target" = all ] && targets=($(cd tests/fuzz && ls fuzz_*.cpp | sed 's/^fuzz_//; s/\.cpp$//'))
status=0
summary="$build/summary.txt"  # one line per target (and each crash's reproducer), for test.sh's summary
: >"$summary"
for t in "${targets[@]}"; do
  cmake --build "$build" --target "fuzz_$t" >/dev/null
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  log="$build/fuzz_$t.log"
  touch "$build/crashes/$t.started"
  # New inputs go to the build's corpus; the seeds in tests/fuzz/corpus stay untouched.
  if "$build/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$build/crashes/$t/" \
      -rss_limit_mb=2048 "$build/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${runs:-?} executions in ${seconds} s, no crash" | tee -a "$summary"
  else
    tail -30 "$log"
    echo "fuzz $t: CRASH (see $log and $build/crashes/$t/)" | tee -a "$summary"
    grep -m1 -E '^SUMMARY|ERROR: libFuzzer' "$log" | tee -a "$summary"
    # The reproducer, so that a crash on a CI machine can be replayed here:
    #   echo '<base64>' | base64 -d > crash && build-fuzz/fuzz_TARGET crash
    for f in $(find "$build/crashes/$t" -type f -newer "$build/crashes/$t.started"); do
      { echo "reproducer $(basename "$f") ($(stat -c %s "$f") bytes), base64:"
        head -c 65536 "$f" | base64 -w 0
        echo; } | tee -a "$summary"
    done
    status=1
  fi
done
exit $status
