#!/usr/bin/env bash
# One device call for the CUDA forward: build for sm_90, time against PyTorch SDPA
# (flash and cuDNN backends) on the ANCHORS grid, run the GPU tests, then
# compute-sanitizer on the small grid. Logs go to $OUT (the device tool's folder).
# Usage: scripts/device_check_forward.sh [timing|profile|tests|sanitizer ...]  (default: timing tests sanitizer)
set -uo pipefail
OUT=${OUT:-/tmp/tileflash-device}
mkdir -p "$OUT"
steps=${*:-timing tests sanitizer}
build=build-device
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } 2>&1 | tee "$OUT/device.txt"

cmake -S . -B $build -G Ninja -DTILEFLASH_CUDA=ON -DTILEFLASH_CUDA_ARCHS=90 -DTILEFLASH_BUILD_BENCH=OFF \
  -DCMAKE_CUDA_FLAGS=-Xptxas=-v > "$OUT/build.log" 2>&1 &&
  ninja -C $build -j16 tileflash_tests >> "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -E "Compiling entry|registers|spill" "$OUT/build.log" | grep -B1 -A1 forward_kernel | grep -E "registers|spill" | sort | uniq -c | head -20

g++ -O2 -std=c++17 scripts/forward_timing.cpp -Iinclude $build/libtileflash.a -I/usr/local/cuda/include \
  -L/usr/local/cuda/lib64 -lcudart -lpthread -o $build/forward_timing || exit 1

for step in $steps; do
  case $step in
    timing)
      timeout 150 $build/forward_timing | tee "$OUT/tileflash_forward.csv"
      timeout 150 python3 scripts/sdpa_timing.py "$OUT/tileflash_forward.csv" | tee "$OUT/ratios.csv"
      ;;
    profile)
      # Nsight Compute on one non-causal launch per head dim at seq 4096 (clocks left alone).
      for d in 128 256; do
        timeout 120 ncu --clock-control none -k regex:forward_kernel -s 3 -c 1 --section SpeedOfLight \
          --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
          --section Occupancy $build/forward_timing $d 4096 > "$OUT/ncu_d$d.txt" 2>&1
        grep -E "Duration|Throughput|Stall|Warp Cycles|Issued|Achieved Occupancy|Bank|Pipe" "$OUT/ncu_d$d.txt" | head -40
      done
      ;;
    tests)
      timeout 240 $build/tests/tileflash_tests --gtest_filter='CudaForward*' > "$OUT/tests.log" 2>&1
      echo "tests rc=$?"; grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error" "$OUT/tests.log" | head -40
      ;;
    sanitizer)
      for tool in memcheck racecheck; do
        timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $build/tests/tileflash_tests \
          --gtest_filter='CudaForwardSanitizer.*' > "$OUT/sanitizer_$tool.log" 2>&1
        echo "$tool rc=$?"; tail -3 "$OUT/sanitizer_$tool.log"
      done
      ;;
  esac
done
