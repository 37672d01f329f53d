#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds the binary, and
# runs it. Until the generation pipeline lands, "the main job" is the largest piece that works
# end to end: inspecting a model and testing the communicator on 2 MPI ranks.
#   scripts/demo.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${VI_BUILD_DIR:-build}

scripts/install_deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target video-infinity
bin="$build_dir/src/video-infinity"

model=${1:-../shared/reference/models/tiny/adamdad/videocrafterv2_diffusers}
if [ -d "$model" ]; then
  "$bin" inspect --no-tensors "$model"
else
  echo "demo.sh: no model at $model (pass a model directory to inspect one)"
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none -np 2 "$bin" check-env --megabytes 4
