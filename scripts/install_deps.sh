#!/usr/bin/env bash
# Installs everything video-infinity needs to build and test on Debian 12, non-interactively.
#   1. Debian packages: compilers, CMake/Ninja, OpenMPI, CLI11, spdlog, nlohmann-json, ffmpeg's
#      libav*, GoogleTest, clang (fuzzing), python3-venv.
#   2. LibTorch: PyTorch ${VI_TORCH_VERSION} from PyPI (its CUDA 13 build: libtorch_cuda, cuDNN,
#      cuBLAS, NCCL, ...) in the project's own virtual environment, .venv/ (VI_VENV overrides).
#      CMake finds it there through torch.utils.cmake_prefix_path (cmake/ViDependencies.cmake).
#      About 2.7 GB downloaded (pip caches it), 4.6 GB installed; ~1 min on a fast link.
#   The CUDA toolkit (nvcc, headers) is expected at /usr/local/cuda or on PATH: torch's CMake
#   config needs it to configure a CUDA-enabled LibTorch; nothing here runs on a GPU.
# Idempotent: does nothing (not even `apt-get update` or pip) when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version the lent GPU machine runs (PyTorch 2.11 + CUDA 13). One place for this pin.
VI_TORCH_VERSION=2.11.0
venv=${VI_VENV:-.venv}

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  python3 python3-venv
  openmpi-bin libopenmpi-dev
  iproute2  # tests/multinode: ip netns
  libcli11-dev libspdlog-dev nlohmann-json3-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
  libgtest-dev
  clang libclang-rt-14-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps.sh: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- LibTorch (PyTorch from PyPI) in the project's virtual environment ----------------------
have_torch() {
  [ -x "$venv/bin/python3" ] &&
    [ "$("$venv/bin/python3" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "$VI_TORCH_VERSION" ]
}
if ! have_torch; then
  echo "install_deps.sh: installing torch==$VI_TORCH_VERSION (CUDA build, ~2.7 GB) into $venv"
  # A pyenv/system python3 works as long as it has the venv module (Debian: python3-venv).
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "torch==$VI_TORCH_VERSION"
  have_torch || { echo "install_deps.sh: torch $VI_TORCH_VERSION did not install into $venv" >&2; exit 1; }
fi

if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install_deps.sh: warning: no CUDA toolkit (nvcc) at /usr/local/cuda or on PATH;" \
       "configuring against the CUDA LibTorch needs it" >&2
fi
echo "install_deps.sh: dependencies present (torch $VI_TORCH_VERSION in $venv)"
