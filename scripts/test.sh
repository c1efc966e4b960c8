#!/usr/bin/env bash
# Install dependencies, build tileflash with its tests, and run every test:
# the C++ suite through CTest (including the install + find_package consumer test)
# and, when scripts/test_python.sh exists, the Python tests.
#
# Environment (all optional):
#   TILEFLASH_BUILD_DIR    build folder (default: build)
#   TILEFLASH_CUDA         AUTO (default: when nvcc is found), ON or OFF
#   TILEFLASH_CUDA_ARCHS   e.g. "80" to compile the kernels for one architecture only
#   TILEFLASH_HEAD_DIMS    e.g. "64" to compile one head-dim tile only
#   TILEFLASH_JOBS         parallel build and test jobs (default: all cores)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

build_dir="${TILEFLASH_BUILD_DIR:-build}"
jobs="${TILEFLASH_JOBS:-$(nproc)}"
config=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_BUILD_TESTS=ON -DTILEFLASH_CUDA="${TILEFLASH_CUDA:-AUTO}")
[[ -n "${TILEFLASH_CUDA_ARCHS:-}" ]] && config+=(-DTILEFLASH_CUDA_ARCHS="$TILEFLASH_CUDA_ARCHS")
[[ -n "${TILEFLASH_HEAD_DIMS:-}" ]] && config+=(-DTILEFLASH_HEAD_DIMS="$TILEFLASH_HEAD_DIMS")

cmake -S . -B "$build_dir" "${config[@]}"
cmake --build "$build_dir" --parallel "$jobs"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$jobs"

if [[ -x "$root/scripts/test_python.sh" ]]; then
  "$root/scripts/test_python.sh"
elif [[ -f "$root/scripts/test_python.sh" ]]; then
  bash "$root/scripts/test_python.sh"
fi
echo "test: all tests passed"
