#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (what CI runs): installs what is missing
# (Debian packages, PyTorch 2.11 with CUDA into .venv), then four stages, each run even if an
# earlier one failed; exits non-zero if any failed. Every build is a CUDA build (LibTorch with
# libtorch_cuda, NCCL on): the GPU code compiles here; the gpu/nccl tests need a device.
#   1. Release build of every target, every ctest label except gpu/nccl/slow (unit, tiny, e2e,
#      mpi), then the gpu label, which must skip cleanly without a device.
#   2. The lent GPU machine's build, exactly as scripts/gpu_check.sh does it there (header-only
#      dependencies from .carry/, no MPI/ffmpeg): configure and compile what it runs.
#   3. Each libFuzzer target for VI_FUZZ_SECONDS (default 20) seconds, two at a time
#      (scripts/fuzz.sh).
#   4. ASan+UBSan build (at -O0) of the library and tests; the unit and tiny tests under it.
# Usage:
#   scripts/test.sh                 all four stages
#   scripts/test.sh --quick [args]  stage 1 only (extra args go to ctest)
#   scripts/test.sh --sanitize [args]  stage 4 only
# Environment: VI_BUILD_DIR (default build), VI_SANITIZE_BUILD_DIR (default build-sanitize),
# VI_GPU_BUILD_DIR (default build-gpu), VI_JOBS (default nproc), VI_FUZZ_SECONDS.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --quick) mode=quick; shift ;;
  --sanitize) mode=sanitize; shift ;;
esac
jobs=${VI_JOBS:-$(nproc)}
fuzz_seconds=${VI_FUZZ_SECONDS:-20}

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

build() {  # build DIR TARGET CMAKE_ARGS...: configure and build TARGET ("all": every target)
  local dir=$1 target=$2; shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVI_BUILD_TESTS=ON "$@" || return 1
  local start=$(date +%s)
  cmake --build "$dir" -j "$jobs" --target "$target" || return 1
  echo "test.sh: build took $(( $(date +%s) - start )) s"
}

release() {
  local dir=${VI_BUILD_DIR:-build}
  # One ctest per unit/tiny test executable (fewer process starts; e2e and MPI tests per TEST).
  build "$dir" all -DVI_SANITIZE=OFF -DVI_WITH_NCCL=ON -DVI_TEST_PER_EXECUTABLE=ON || return 1
  # What was built (the configure output above says LibTorch x (CUDA ON) | NCCL ON): the binary
  # links libtorch_cuda.
  echo "test.sh: $(ldd "$dir/src/video-infinity" | grep -oE 'lib(torch_cuda|nccl|cudart)[^ ]*' | sort -u | tr '\n' ' ')"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --label-exclude 'gpu|nccl|slow' "$@") || return 1
  # Without a device every gpu/nccl test must skip, not fail.
  (cd "$dir" && ctest --output-on-failure --label-regex 'gpu|nccl')
}

gpu_machine_build() {
  scripts/prepare_gpu_carry.sh || return 1
  VI_PYTHON=$PWD/.venv/bin/python3 OUT=${VI_GPU_BUILD_DIR:-build-gpu}/out scripts/gpu_check.sh --build-only
}

sanitize() {
  # -O0: the least compile time (the stage's cost is compiling; -O1 took 392 s of the clean-clone
  # suite); the tests' time is LibTorch's own (uninstrumented).
  # Only what the unit and tiny labels run (the release stage builds everything).
  # One ctest per test executable: 185 process starts (~0.6 s each under ASan) become ~40.
  build "${VI_SANITIZE_BUILD_DIR:-build-sanitize}" vi_unit_and_tiny_tests -DVI_SANITIZE=ON \
    -DCMAKE_CXX_FLAGS_RELEASE=-O0 -DVI_TEST_PER_EXECUTABLE=ON || return 1
  # Leak reports off: LibTorch keeps global allocations alive until exit.
  (cd "${VI_SANITIZE_BUILD_DIR:-build-sanitize}" &&
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} ctest --output-on-failure -j "$jobs" --label-regex 'unit|tiny' "$@")
}

if [ "$mode" = all ] || [ "$mode" = quick ]; then
  stage "release build (CUDA LibTorch, NCCL) + tests" release "$@"
fi
if [ "$mode" = all ]; then
  stage "GPU-machine build (header-only deps, gpu_check.sh --build-only)" gpu_machine_build
  stage "fuzz ($fuzz_seconds s per target, two at a time)" scripts/fuzz.sh all "$fuzz_seconds"
fi
if [ "$mode" = all ] || [ "$mode" = sanitize ]; then
  stage "ASan+UBSan build + unit and tiny tests" sanitize "$@"
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
