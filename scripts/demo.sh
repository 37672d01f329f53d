#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds, and generates a
# video with 2 MPI ranks (Video-Infinity: 2 clips, dual-scope attention between them).
#   scripts/demo.sh                      the built-in tiny random model (made on first use)
#   scripts/demo.sh MODEL_DIR [UNET_DIR] [extra video-infinity flags...]   real weights
# Writes out/demo.mp4 (+ out/demo.mp4.json).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${VI_BUILD_DIR:-build}

scripts/install_deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target video-infinity
bin="$build_dir/src/video-infinity"
mkdir -p out

model=${1:-}
unet_args=()
size_args=()
if [ -z "$model" ]; then
  model=out/tiny-model
  [ -d "$model" ] || "$bin" make-test-model --preset tiny --seed 0 --out "$model"
  # The tiny model is random: the video is noise-like, but every stage runs for real.
  size_args=(--height 128 --width 192 --frames 32 --steps 10 --attn-padding 4 --attn-top-k 8)
else
  shift
  if [ $# -gt 0 ] && [ -d "$1" ]; then unet_args=(--unet "$1"); shift; fi
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
threads=$(( $(nproc) / 2 )); [ "$threads" -ge 1 ] || threads=1
time mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=$threads -np 2 "$bin" \
  --model "$model" "${unet_args[@]}" \
  --prompt "A beagle wearing diving goggles swimming in the ocean while the camera is moving, coral reefs in the background." \
  "${size_args[@]}" --output out/demo.mp4 --overwrite "$@"
