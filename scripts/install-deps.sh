#!/usr/bin/env bash
# Installs the Debian packages Remora needs to build, test and benchmark.
# Idempotent: it asks dpkg what is already there and installs only what is missing,
# so a second run on a ready machine does nothing and needs no network.
# `--build-only`: just what building the binaries needs (the container image's build stage).
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev node-llhttp libssl-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev
)
packages=(
  "${build_packages[@]}"
  libgtest-dev libgmock-dev libbenchmark-dev
  curl openssl python3 procps
  wrk haproxy nginx-light
  clang libclang-rt-14-dev llvm   # `make fuzz`: clang, libFuzzer's runtime, llvm-symbolizer
  systemd jq
)
if [ "${1:-}" = "--build-only" ]; then
  packages=("${build_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; install these packages by hand: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The perf peers (haproxy, nginx) must not start as system services: we only use their binaries.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
