#!/usr/bin/env bash
# Run HERE (Debian, with apt) before a device run: downloads the header-only dependencies the
# lent GPU machine lacks (it has PyTorch, CMake, ninja, nvcc and NCCL, but no apt and no
# internet) and unpacks them into .carry/ (git-ignored), which the device run carries along.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.carry
rm -rf "$out" && mkdir -p "$out/debs"
( cd "$out/debs" && apt-get download libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev googletest >/dev/null 2>&1 )
for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/unpacked"; done
rm -rf "$out/debs"
# Keep only headers and the GoogleTest sources: nothing compiled for Debian travels.
mkdir -p "$out/usr"
mv "$out/unpacked/usr/include" "$out/usr/include"
mv "$out/unpacked/usr/src" "$out/usr/src"
rm -rf "$out/unpacked"
du -sh "$out"
echo "prepare_gpu_carry.sh: unpacked into $out/usr (pass carry: [\".carry\"] to the device run)"
