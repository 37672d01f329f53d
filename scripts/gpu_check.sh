#!/usr/bin/env bash
# The GPU check: ONE device call on the lent GPU machine (pip PyTorch 2.11 with CUDA 13, nvcc,
# NCCL from pip, CMake, ninja; no apt, no MPI, no internet), finished within VI_GPU_BUDGET
# seconds (default 450; give the device call timeout_s 480) and certain to leave its results:
#   $OUT/summary.md     versions, every step's status and every number (also printed last)
#   $OUT/logs.tar.gz    the whole configure/build/test/benchmark logs and JSON
# HERE first:  scripts/prepare_gpu_carry.sh          (header-only dependencies into .carry/)
# THERE:       run(command="VI_COMMIT=<hash> scripts/gpu_check.sh", carry=[".carry"], timeout_s=480)
#              (the device's copy of the tree has no .git: VI_COMMIT names the commit in the summary)
# Steps, in order of what matters; each runs under `timeout` with what is left of the budget,
# and a failed step never stops the summary from being written:
#   1. versions and paths: GPU, driver, torch, CUDA, cuDNN, NCCL, C++ ABI, compilers
#   2. configure (header-only dependencies, NCCL on, no MPI/ffmpeg), whole log kept
#   3. build only what the next steps run (the CUDA parity test, the two benchmarks)
#   4. the CUDA parity tests (tiny reference model: fp32 vs goldens, bf16/fp16, NCCL world of 1)
#   5. THE figure: one denoising step of the real VideoCrafter2 configuration (random weights,
#      bf16, 320x512, 24 frames, CFG batch 2): s/step, TFLOP/s, % of the bf16 dense peak
#   6. if time remains: the same without cuDNN benchmark mode; 96 and 288 frames; 2,304 frames
#      with --frame-chunk 48 and --cfg-serial; the temporal attention forms
# `scripts/gpu_check.sh --build-only` runs steps 2-3 only, with no GPU: CI uses it so that the
# exact configure and build of the device run are tested on every commit.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=${VI_GPU_BUDGET:-450}
deadline=$(( start + budget ))
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1
out=${OUT:-out/gpu}
build=${VI_GPU_BUILD_DIR:-build-gpu}
py=${VI_PYTHON:-python3}
jobs=$(nproc)
mkdir -p "$out"
logs=$(mktemp -d)
summary="$out/summary.md"
elapsed() { echo $(( $(date +%s) - start )); }
left() {  # left CAP: seconds left in the budget, at most CAP, at least 1
  local l=$(( deadline - $(date +%s) ))
  [ "$l" -lt 1 ] && l=1
  [ "$l" -lt "$1" ] && echo "$l" || echo "$1"
}
note() { echo "$*" | tee -a "$logs/steps.md"; }
finish() {
  {
    echo "# gpu_check.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), commit ${VI_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '? (pass VI_COMMIT)')}"
    echo; echo "## Machine and versions"; echo '```'; cat "$logs/versions.txt" 2>/dev/null; echo '```'
    echo; echo "## Steps (seconds since start)"; cat "$logs/steps.md" 2>/dev/null
    for f in parity flops bench24 bench24_nobench bench_more bench2304 attention; do
      [ -s "$logs/$f.md" ] || continue
      echo; echo "## $f"; echo '```'; cat "$logs/$f.md"; echo '```'
    done
  } > "$summary"
  tar -czf "$out/logs.tar.gz" -C "$logs" . 2>/dev/null
  echo; echo "=================== summary ($summary; logs in $out/logs.tar.gz)"; cat "$summary"
  rm -rf "$logs"
}
trap finish EXIT

[ -d .carry/usr/include ] || { note "- .carry/ missing: run scripts/prepare_gpu_carry.sh before the device call"; exit 1; }
# LibTorch's CMake config needs nvcc: when it is not on PATH, the usual places (the toolkit, or
# the pip nvidia-cuda-nvcc package beside torch).
if ! command -v nvcc >/dev/null; then
  site=$("$py" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc "$site"/nvidia/cu*/bin/nvcc "$site"/nvidia/cuda_nvcc/bin/nvcc; do
    if [ -x "$c" ]; then export PATH="$(dirname "$c"):$PATH"; note "- nvcc was not on PATH: using $c"; break; fi
  done
fi
generator=Ninja
command -v ninja >/dev/null || { generator="Unix Makefiles"; note "- no ninja: Unix Makefiles"; }

# 1. Versions and paths.
{
  [ $build_only = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  PYTHONWARNINGS=ignore "$py" - <<'PY' 2>&1
import torch, os
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(),
      "| C++11 ABI", torch._C._GLIBCXX_USE_CXX11_ABI)
print("cmake prefix", torch.utils.cmake_prefix_path)
try:
    print("NCCL (torch)", ".".join(map(str, torch.cuda.nccl.version())))
except Exception as e:
    print("NCCL (torch): unknown,", e)
try:
    import nvidia.nccl
    print("NCCL (pip)", list(nvidia.nccl.__path__)[0])
except Exception as e:
    print("NCCL (pip): not found,", e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, "| capability", f"{p.major}.{p.minor}", "| SMs", p.multi_processor_count,
          "| memory GiB", round(p.total_memory / 2**30, 1))
PY
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo 'not on PATH')"
  echo "cmake: $(cmake --version | head -1), ninja $(ninja --version 2>/dev/null), $(c++ --version | head -1), $jobs cores"
} > "$logs/versions.txt" 2>&1
cat "$logs/versions.txt"
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
[ -n "$torch_prefix" ] || { note "- no torch in $py: cannot configure"; exit 1; }

# 2. Configure. The same flags every time, except that CI's --build-only run compiles at -O0:
# it checks that everything compiles (includes, APIs, templates) in half the time.
opt=(-DCMAKE_CXX_FLAGS_RELEASE="-O3 -DNDEBUG")  # explicit: a cached -O0 must not survive
[ $build_only = 1 ] && opt=(-DCMAKE_CXX_FLAGS_RELEASE=-O0)
if ! timeout "$(left 120)" cmake -S . -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release "${opt[@]}" \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DVI_PYTHON="$(command -v "$py")" \
    -DVI_HEADER_ONLY_DEPS=ON -DVI_DEPS_PREFIX="$PWD/.carry/usr" \
    -DVI_WITH_MPI=OFF -DVI_WITH_FFMPEG=OFF -DVI_WITH_NCCL=ON -DVI_BUILD_TESTS=ON > "$logs/configure.log" 2>&1; then
  tail -30 "$logs/configure.log"
  note "- $(elapsed) s: CONFIGURE FAILED (configure.log)"
  exit 1
fi
note "- $(elapsed) s: configured: $(grep -m1 'video-infinity: LibTorch [0-9]' "$logs/configure.log" | sed 's/^-- //')"

# 3. Build what the next steps run.
targets=(test_cuda_parity bench_denoise_step bench_temporal_attention)
if ! timeout "$(left 400)" cmake --build "$build" -j "$jobs" --target "${targets[@]}" > "$logs/build.log" 2>&1; then
  grep -m 30 -E "error|Error" "$logs/build.log"
  note "- $(elapsed) s: BUILD FAILED (build.log; first errors above)"
  exit 1
fi
note "- $(elapsed) s: built ${targets[*]}"
[ $build_only = 1 ] && exit 0

# 4. The CUDA parity tests, run directly (no ctest discovery).
timeout "$(left 150)" "$build/tests/test_cuda_parity" > "$logs/parity.log" 2>&1
rc=$?
grep -E "rel |frames|OK \]|FAILED|SKIPPED|PASSED|Failure|exception" "$logs/parity.log" > "$logs/parity.md"
counts=$(grep -hoE '\[  (PASSED|SKIPPED|FAILED) *\] [0-9]+ tests?' "$logs/parity.log" | sed -E 's/\[  //; s/ *\]//' | tr '\n' ',')
note "- $(elapsed) s: CUDA parity tests: $([ $rc = 0 ] && echo "exit 0" || echo "FAILED (exit $rc)") (${counts%,})"

# 5. THE figure. H200 (= H100 SXM compute): 989 dense bf16 TFLOP/s.
bench=("$build/tools/bench_denoise_step" --preset videocrafter2 --device cuda --dtype bf16 --height 320 --width 512
       --frames-per-clip 24 --peak-tflops "${VI_PEAK_TFLOPS:-989}")
"${bench[0]}" --preset videocrafter2 --count-flops --height 320 --width 512 --frames-per-clip 24 --frames 24 \
  > "$logs/flops.md" 2>&1
run_bench() {  # run_bench NAME CAP ARGS...: one benchmark under the budget
  local name=$1 cap=$2; shift 2
  local t=$(left "$cap")
  if [ "$t" -lt 20 ]; then note "- $(elapsed) s: $name skipped (budget spent)"; return; fi
  timeout "$t" "${bench[@]}" "$@" --json "$logs/$name.json" > "$logs/$name.md" 2>&1
  local rc=$?
  note "- $(elapsed) s: $name: $([ $rc = 0 ] && echo done || echo "exit $rc$([ $rc = 124 ] && echo ', timed out')")"
}
run_bench bench24 90 --frames 24 --iters 3
# 6. If time remains.
run_bench bench24_nobench 60 --frames 24 --iters 3 --no-cudnn-benchmark
run_bench bench_more 90 --frames 96,288 --iters 2 --frame-chunk 48
run_bench bench2304 120 --frames 2304 --iters 1 --frame-chunk 48 --cfg-serial
t=$(left 40)
if [ "$t" -ge 15 ]; then
  timeout "$t" "$build/tools/bench_temporal_attention" --device cuda --dtype bf16 --pixels 2560 --reps 5 --no-dense \
    > "$logs/attention.md" 2>&1
  rc=$?
  note "- $(elapsed) s: temporal attention forms: exit $rc"
fi
note "- $(elapsed) s: done"
