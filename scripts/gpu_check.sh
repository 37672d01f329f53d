#!/usr/bin/env bash
# The GPU check, for the lent GPU machine (pip PyTorch with CUDA, nvcc, NCCL from pip, CMake,
# ninja; no apt, no MPI, no internet). Sized to finish in under 8 minutes.
# HERE first:  scripts/prepare_gpu_carry.sh     (header-only deps into .carry/)
# THERE:       scripts/gpu_check.sh             (device run with carry [".carry"])
# Steps: build (Release, ninja) against the CUDA LibTorch, the gpu/nccl-labelled tests, then
# the denoising-step benchmark on the real VideoCrafter2 configuration (random weights) at
# 24, 96, 288 frames and doubling until memory runs out. Table printed last; JSON in $OUT.
# STATUS: written without a GPU; never run yet (see docs/benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
mkdir -p "$out"
start=$(date +%s)
[ -d .carry/usr/include ] || { echo "gpu_check.sh: .carry/ missing: run scripts/prepare_gpu_carry.sh here first" >&2; exit 1; }
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
nccl_root=$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DVI_HEADER_ONLY_DEPS=ON -DVI_DEPS_PREFIX="$PWD/.carry/usr" -DVI_WITH_MPI=OFF -DVI_WITH_FFMPEG=OFF \
  -DVI_WITH_NCCL=ON -DNCCL_ROOT="$nccl_root" -DCMAKE_CUDA_ARCHITECTURES=90 2>&1 | tail -3 | tee "$out/configure.log"
if ! cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1; then
  grep -m 20 -E "error" "$out/build.log"; echo "gpu_check.sh: BUILD FAILED after $(( $(date +%s) - start )) s"; exit 1
fi
echo "gpu_check.sh: built in $(( $(date +%s) - start )) s"

# Tests: the gpu/nccl labels, plus the whole CPU suite's tiny parity tests on this machine.
(cd build-gpu && timeout 180 ctest -L 'gpu|nccl|tiny' --output-on-failure -j 4 2>&1 | tail -25) | tee "$out/tests.log"

# Benchmark: real configuration, bf16, 320x512, CFG. FLOPs: 786 GFLOP per frame per CFG branch
# (the issue's count for a 40x64 latent; to be replaced by our own count).
timeout 300 build-gpu/tools/bench_denoise_step --preset videocrafter2 --device cuda --dtype bf16 \
  --height 320 --width 512 --frames-per-clip 24 --frames 24,96,288 --until-oom --iters 2 \
  --gflop-per-frame 786 --peak-tflops 989 --json "$out/bench.json" | tee "$out/bench.md"
echo "gpu_check.sh: done in $(( $(date +%s) - start )) s"
