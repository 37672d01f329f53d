#!/usr/bin/env bash
# Run HERE (Debian, with apt) before a device run, and in CI: the lent GPU machine has PyTorch,
# CMake, ninja, nvcc and NCCL, but no apt, no MPI and no internet, so the header-only
# dependencies (spdlog, fmt, nlohmann-json, CLI11, GoogleTest's sources) travel with the run as
# .carry/usr (git-ignored; pass carry [".carry"] to the device run). About 10 MB.
# Idempotent: does nothing when .carry/ already holds these packages at the versions apt has.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.carry
packages=(libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev googletest)

versions() { for p in "${packages[@]}"; do apt-cache policy "$p" 2>/dev/null | awk -v p="$p" '/Candidate:/ {print p, $2}'; done; }
wanted=$(versions)
if [ -z "$wanted" ] || [ "$(echo "$wanted" | wc -l)" -ne ${#packages[@]} ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq  # a machine whose package lists were cleaned
  wanted=$(versions)
fi
if [ -f "$out/packages.txt" ] && [ "$(cat "$out/packages.txt")" = "$wanted" ] && [ -d "$out/usr/include/spdlog" ]; then
  echo "prepare_gpu_carry.sh: $out is up to date ($(du -sh "$out" | cut -f1))"
  exit 0
fi

rm -rf "$out" && mkdir -p "$out/debs"
( cd "$out/debs" && apt-get download "${packages[@]}" 2>&1 >/dev/null | grep -v "unsandboxed as root" >&2 || true )
got=$(ls "$out"/debs/*.deb 2>/dev/null | wc -l)
[ "$got" -eq ${#packages[@]} ] || { echo "prepare_gpu_carry.sh: apt-get download gave $got of ${#packages[@]} packages" >&2; exit 1; }
for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/unpacked"; done
rm -rf "$out/debs"
# Keep only headers and the GoogleTest sources: nothing compiled for Debian travels.
mkdir -p "$out/usr"
mv "$out/unpacked/usr/include" "$out/usr/include"
mv "$out/unpacked/usr/src" "$out/usr/src"
rm -rf "$out/unpacked"
echo "$wanted" > "$out/packages.txt"
echo "prepare_gpu_carry.sh: unpacked $(echo "$wanted" | tr '\n' ' ')into $out/usr ($(du -sh "$out" | cut -f1))"
