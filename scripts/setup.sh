#!/usr/bin/env bash
# Install what tileflash needs when it is missing. Idempotent: a second run installs
# nothing. Debian/Ubuntu (apt-get); elsewhere, or without network, it names what is
# missing and fails.
#
#   scripts/setup.sh          everything: build, tests and benchmark
#   scripts/setup.sh bench    only what building and running tileflash-bench needs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
purpose="${1:-all}"

# probe (a command, or a file that proves the package is there) -> Debian package
probes=(
  "cmake cmake"
  "ninja ninja-build"
  "g++ g++"
  "python3 python3"
)
if [[ "$purpose" != bench ]]; then
  probes+=(
    "/usr/include/gtest/gtest.h libgtest-dev"
    "/usr/include/gmock/gmock.h libgmock-dev"
    "/usr/include/benchmark/benchmark.h libbenchmark-dev"
  )
fi
missing=()
for entry in "${probes[@]}"; do
  probe="${entry% *}" package="${entry#* }"
  if [[ "$probe" == /* ]]; then
    [[ -e "$probe" ]] || missing+=("$package")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("$package")
  fi
done
if command -v python3 >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || missing+=("python3-pip")
  [[ "$purpose" == bench ]] || python3 -m venv --help >/dev/null 2>&1 || missing+=("python3-venv")
fi

if ((${#missing[@]})); then
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1 || ! $sudo apt-get update -qq ||
     ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    echo "setup: could not install ${missing[*]}; please install them (Debian package names)" >&2
    exit 1
  fi
fi

"$root/scripts/fetch_third_party.sh"
