#!/usr/bin/env bash
# The GPU check, for the lent GPU machine (pip PyTorch with CUDA, nvcc, NCCL from pip, CMake,
# ninja; no apt, no MPI, no internet). Sized to finish in under 8 minutes.
# HERE first:  scripts/prepare_gpu_carry.sh     (header-only deps into .carry/)
# THERE:       scripts/gpu_check.sh             (device run with carry [".carry"])
# Steps: build (Release, ninja) against the CUDA LibTorch, the gpu/nccl-labelled tests, then
# the benchmarks on the real VideoCrafter2 configuration (random weights, bf16, 320x512, CFG):
# the denoising step at 24, 96, 288 frames in the default layout and in channels-last, the
# largest frame count that fits (frame chunks, doubling from 576 until memory runs out), and the
# temporal attention forms (block matmul, gathered through SDPA, dense). TFLOP/s use our own
# FLOP count (bench_denoise_step --count-flops, printed too). Every step gets what is left of an
# 8-minute budget; the tables are printed last; JSON and logs in $OUT.
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
(cd build-gpu && timeout 120 ctest -L 'gpu|nccl|tiny' --output-on-failure -j 4 2>&1 | tail -25) | tee "$out/tests.log"

# Each step runs under `timeout` with at most what is left of the budget (480 s from the start).
deadline=$(( start + 480 ))
left() {
  local l=$(( deadline - $(date +%s) ))
  [ "$l" -lt 1 ] && l=1
  [ "$l" -lt "$1" ] && echo "$l" || echo "$1"
}
bench=build-gpu/tools/bench_denoise_step
common=(--preset videocrafter2 --device cuda --dtype bf16 --height 320 --width 512 --frames-per-clip 24 --peak-tflops 989)

$bench --preset videocrafter2 --count-flops --height 320 --width 512 --frames-per-clip 24 --frames 288 > "$out/flops.md"
timeout "$(left 70)" $bench "${common[@]}" --frames 24,96,288 --iters 2 --json "$out/bench.json" > "$out/bench.md" 2>&1
timeout "$(left 70)" $bench "${common[@]}" --frames 24,96,288 --iters 2 --channels-last \
  --json "$out/bench_channels_last.json" > "$out/bench_channels_last.md" 2>&1
# The largest that fits: frame chunks of 48 images keep the per-frame layers' activations
# bounded; 576, 1152, 2304, ... until a step fails (out of memory) or the budget ends.
timeout "$(left 150)" $bench "${common[@]}" --frames 576 --until-oom --iters 1 --frame-chunk 48 \
  --json "$out/bench_largest.json" > "$out/bench_largest.md" 2>&1
# The issue's memory target: ~2,300 frames on one GPU; with the guidance branches as two calls
# (generate --cfg-serial) when the batched step does not fit.
timeout "$(left 60)" $bench "${common[@]}" --frames 2304 --iters 1 --frame-chunk 48 --cfg-serial \
  --json "$out/bench_2304_cfg_serial.json" > "$out/bench_2304_cfg_serial.md" 2>&1
timeout "$(left 30)" build-gpu/tools/bench_temporal_attention --device cuda --dtype bf16 --reps 5 \
  > "$out/attention.md" 2>&1

for f in flops bench bench_channels_last bench_largest bench_2304_cfg_serial attention; do
  echo; echo "### $f"; cat "$out/$f.md" 2>/dev/null || echo "(missing: timed out or failed)"
done
echo "gpu_check.sh: done in $(( $(date +%s) - start )) s"
