#!/usr/bin/env bash
# Benchmarks on whatever device is present (CPU here: tiny/small presets), tables printed:
#   1. one denoising step at several frame counts (bench_denoise_step)
#   2. one temporal attention: banded (block matmul), gathered (the GPU form) and the
#      reference's dense form (bench_temporal_attention)
#   3. one denoising step on 1 and 2 MPI ranks: step time, time inside communicator calls as a
#      share of the step, MB sent per UNet call (bench_denoise_step under mpirun)
#   4. the same generation on 1 and 2 MPI ranks through the CLI: per-step time and MB per call
#   5. the UNet's FLOP count (videocrafter2 at 320x512, 24 frames): plain vs dual-scope
# Usage: scripts/bench.sh [preset]     (default tiny; results also in out/bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-tiny}
build_dir=${VI_BUILD_DIR:-build}
scripts/install_deps.sh >/dev/null
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target video-infinity bench_denoise_step bench_temporal_attention >/dev/null
mkdir -p out/bench
threads=$(nproc)

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "## 1. Denoising step ($preset, CPU, $threads threads)"
OMP_NUM_THREADS=$threads "$build_dir/tools/bench_denoise_step" --preset "$preset" --device auto \
  --height 64 --width 64 --frames-per-clip 8 --frames 8,16,32 --iters 2 --json out/bench/denoise_step.json
echo; echo "Channels-last (a cuDNN layout; on the CPU only a sanity check):"
OMP_NUM_THREADS=$threads "$build_dir/tools/bench_denoise_step" --preset "$preset" --device auto --channels-last \
  --height 64 --width 64 --frames-per-clip 8 --frames 32 --iters 2 --json out/bench/denoise_step_cl.json | tail -1

echo; echo "## 2. Temporal attention"
OMP_NUM_THREADS=$threads "$build_dir/tools/bench_temporal_attention" --reps 2

echo; echo "## 3. Denoising step on 1 vs 2 MPI ranks (32 frames in clips of 8; comm % = time inside"
echo "communicator calls on rank 0 / step time; with blocking MPI it includes waiting for the other rank)"
for n in 1 2; do
  t=$(( threads / n )); [ "$t" -ge 1 ] || t=1
  mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=$t -np $n "$build_dir/tools/bench_denoise_step" \
    --preset "$preset" --height 64 --width 64 --frames-per-clip 8 --frames 32 --iters 3 \
    --json out/bench/denoise_step_ranks$n.json | { if [ "$n" = 1 ]; then tail -3; else tail -1; fi; }
done

echo; echo "## 4. 1 vs 2 MPI ranks, whole generation (32 frames, 4 clips, $preset model)"
model=out/bench/$preset-model
[ -d "$model" ] || "$build_dir/src/video-infinity" make-test-model --preset "$preset" --out "$model" >/dev/null
echo "| ranks | denoise s | s/step | MB sent per UNet call (rank 0) |"
echo "|---|---|---|---|"
for n in 1 2; do
  t=$(( threads / n )); [ "$t" -ge 1 ] || t=1
  mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=$t -np $n "$build_dir/src/video-infinity" \
    --model "$model" --prompt "a red fox running through snow" --frames 32 --clips 4 --height 64 --width 64 \
    --steps 4 --attn-padding 4 --attn-top-k 8 --conv-padding 4 --quiet --overwrite --output out/bench/ranks$n.mp4
  python3 - "$n" out/bench/ranks$n.mp4.json <<'PY'
import json, sys
n, path = sys.argv[1], sys.argv[2]
s = json.load(open(path))
t = s["times_s"]["denoise"]; steps = s["settings"]["steps"]
print(f"| {n} | {t:.2f} | {t/steps:.3f} | {s['bytes_sent_rank0']['per_unet_call']/1e6:.2f} |")
PY
done

echo; echo "## 5. UNet FLOPs per frame per CFG branch (videocrafter2, 320x512 -> 40x64 latent, clips of 24)"
"$build_dir/tools/bench_denoise_step" --preset videocrafter2 --count-flops --height 320 --width 512 \
  --frames-per-clip 24 --frames 192
