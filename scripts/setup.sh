#!/usr/bin/env bash
# Install what tileflash needs to build, test and benchmark, when it is missing.
# Idempotent: a second run installs nothing. Debian/Ubuntu (apt-get); elsewhere it
# only reports what is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# command or header that proves the package is there -> Debian package
declare -A probes=(
  [cmake]="cmake"
  [ninja]="ninja-build"
  [g++]="g++"
  [python3]="python3"
  [/usr/include/gtest/gtest.h]="libgtest-dev"
  [/usr/include/gmock/gmock.h]="libgmock-dev"
  [/usr/include/benchmark/benchmark.h]="libbenchmark-dev"
)
missing=()
for probe in "${!probes[@]}"; do
  if [[ "$probe" == /* ]]; then
    [[ -e "$probe" ]] || missing+=("${probes[$probe]}")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("${probes[$probe]}")
  fi
done
python3 -m venv --help >/dev/null 2>&1 || missing+=("python3-venv")
python3 -m pip --version >/dev/null 2>&1 || missing+=("python3-pip")

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: please install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

"$root/scripts/fetch_third_party.sh"
