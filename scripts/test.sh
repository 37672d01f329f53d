#!/usr/bin/env bash
# The whole CPU test suite on a fresh Debian 12 machine: installs what is missing, builds
# (Release), runs every ctest label except gpu/nccl/slow, ends with ctest's summary.
#   scripts/test.sh [--sanitize] [extra ctest args...]
# Environment: VI_BUILD_DIR (default build, or build-sanitize), VI_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=OFF
if [ "${1:-}" = "--sanitize" ]; then sanitize=ON; shift; fi
build_dir=${VI_BUILD_DIR:-build}
[ "$sanitize" = ON ] && build_dir=${VI_BUILD_DIR:-build-sanitize}
jobs=${VI_JOBS:-$(nproc)}

scripts/install_deps.sh

start=$(date +%s)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVI_BUILD_TESTS=ON -DVI_SANITIZE=$sanitize
cmake --build "$build_dir" -j "$jobs"
echo "test.sh: build took $(( $(date +%s) - start )) s"

start=$(date +%s)
cd "$build_dir"
status=0
ctest --output-on-failure --label-exclude 'gpu|nccl|slow' -j "$jobs" "$@" || status=$?
echo "test.sh: tests took $(( $(date +%s) - start )) s"
exit $status
