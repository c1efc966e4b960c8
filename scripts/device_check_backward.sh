#!/usr/bin/env bash
# One device call for the CUDA backward: build for sm_90, run the backward GPU tests, time
# tileflash's backward against PyTorch SDPA's flash backend (FA2) on the ANCHORS grid
# (bf16, b*s = 16384 tokens, hidden 2048, d = 64/128/256, causal and not). Logs go to $OUT.
# caps: the same timing at s = 4096 with the shared memory the tiles may use capped at
# A100's 163 KiB and at the 99 KiB of sm_86/89/120 (TILEFLASH_SMEM_LIMIT_BYTES), i.e. the
# smaller tile variants those GPUs get, run on this GPU.
# sanitizer_small: racecheck of the small sanitizer grid under the 99 KiB cap.
# Usage: scripts/device_check_backward.sh [tests] [timing] [caps] [profile] [sanitizer] [sanitizer_small]
#   (default: tests timing)
# GoogleTest: the system's, else sources carried in .carry/googletest (ignored by git).
set -uo pipefail
OUT=${OUT:-/tmp/tileflash-device}
mkdir -p "$OUT"
steps=${*:-tests timing}
build=build-device-bwd
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } 2>&1 | tee "$OUT/device.txt"

gtest_prefix=""
if [ ! -f /usr/lib/x86_64-linux-gnu/libgtest.a ] && [ ! -f /usr/local/lib/libgtest.a ] && [ -d .carry/googletest ]; then
  cmake -S .carry/googletest -B /tmp/gtest-build -G Ninja -DCMAKE_INSTALL_PREFIX=/tmp/gtest -DBUILD_GMOCK=OFF \
    > "$OUT/gtest.log" 2>&1 && ninja -C /tmp/gtest-build install >> "$OUT/gtest.log" 2>&1 || { tail -20 "$OUT/gtest.log"; exit 1; }
  gtest_prefix="-DCMAKE_PREFIX_PATH=/tmp/gtest"
fi

cmake -S . -B $build -G Ninja -DTILEFLASH_CUDA=ON -DTILEFLASH_CUDA_ARCHS=90 -DTILEFLASH_BUILD_BENCH=OFF $gtest_prefix \
  -DCMAKE_CUDA_FLAGS=-Xptxas=-v > "$OUT/build.log" 2>&1 &&
  ninja -C $build -j16 tileflash_tests >> "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
grep -A2 "Compiling entry function '.*backward_main_kernel" "$OUT/build.log" | grep -E "registers|spill" | sort | uniq -c

# The timing harness (tileflash backward only), shared by the timing and profile steps.
cat > $build/backward_timing.cpp <<'EOF'
// tileflash backward on the ANCHORS grid: median of CUDA-event timings, L2 flushed before
// each repetition. CSV: d,causal,seq,batch,heads,ms,tflops.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <exception>
#include <vector>

#include "tileflash/tileflash.h"

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { std::printf("cuda error %s at %d\n", cudaGetErrorString(e_), __LINE__); std::exit(1); } } while (0)

static std::uint16_t to_bf16(float f) { std::uint32_t b; std::memcpy(&b, &f, 4); return static_cast<std::uint16_t>((b + 0x7FFF + ((b >> 16) & 1)) >> 16); }

// No arguments: the whole grid. "d causal seq": that point alone (for the profiler).
int main(int argc, char** argv) {
  using namespace tileflash;
  const bool one_point = argc == 4;
  const std::int64_t tokens = 16384, hidden = 2048, elements = tokens * hidden;
  std::vector<std::uint16_t> host(elements);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : host) x = to_bf16(normal(rng));
  void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *lse, *flush;
  for (void** p : {&q, &k, &v, &out, &dout, &dq, &dk, &dv}) CHECK(cudaMalloc(p, elements * 2));
  for (void* p : {q, k, v, dout}) CHECK(cudaMemcpy(p, host.data(), elements * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMalloc(&lse, tokens * 32 * 4));
  const std::size_t flush_bytes = 512u << 20;
  CHECK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  std::printf("d,causal,seq,batch,heads,ms,tflops,deterministic\n");
  for (int d : {64, 128, 256})
    for (int causal : {0, 1})
      for (std::int64_t seq : {1024, 2048, 4096, 8192, 16384})
        for (bool deterministic : {false, true}) {
          if (deterministic && (seq != 4096 || one_point)) continue;
          if (one_point && (d != std::atoi(argv[1]) || causal != std::atoi(argv[2]) || seq != std::atoll(argv[3]))) continue;
          const std::int64_t batch = tokens / seq, heads = hidden / d;
          BackwardParams p;
          auto view = [&](void* data) { return TensorView::contiguous(data, DType::bfloat16, {batch, seq, heads, d}, DeviceType::cuda); };
          p.q = view(q); p.k = view(k); p.v = view(v); p.out = view(out);
          p.lse = TensorView::contiguous(lse, DType::float32, {batch, heads, seq}, DeviceType::cuda);
          p.causal = causal;
          p.dout = view(dout); p.dq = view(dq); p.dk = view(dk); p.dv = view(dv);
          p.deterministic = deterministic;
          p.backend = Backend::cuda;
          try {
            forward(p);
          } catch (const std::exception& e) {  // time the backward even if the forward is unavailable
            std::vector<float> typical(batch * heads * seq, std::log(float(seq)));
            CHECK(cudaMemcpy(lse, typical.data(), typical.size() * 4, cudaMemcpyHostToDevice));
            CHECK(cudaMemcpy(out, host.data(), elements * 2, cudaMemcpyHostToDevice));
          }
          CHECK(cudaDeviceSynchronize());
          std::vector<float> ms;
          for (int rep = 0; rep < 13; ++rep) {
            CHECK(cudaMemsetAsync(flush, rep, flush_bytes));
            CHECK(cudaEventRecord(start));
            backward(p);
            CHECK(cudaEventRecord(stop));
            CHECK(cudaEventSynchronize(stop));
            float t = 0;
            CHECK(cudaEventElapsedTime(&t, start, stop));
            if (rep >= 3) ms.push_back(t);
          }
          CHECK(cudaGetLastError());
          std::sort(ms.begin(), ms.end());
          const double median = ms[ms.size() / 2];
          const double flops = 2.5 * 4.0 * batch * heads * double(seq) * seq * d / (causal ? 2 : 1);
          std::printf("%d,%d,%lld,%lld,%lld,%.4f,%.1f,%d\n", d, causal, (long long)seq, (long long)batch, (long long)heads,
                      median, flops / median / 1e9, deterministic ? 1 : 0);
          std::fflush(stdout);
        }
  return 0;
}
EOF
build_timing() {
  g++ -O2 -std=c++17 $build/backward_timing.cpp -Iinclude $build/libtileflash.a -I/usr/local/cuda/include \
    -L/usr/local/cuda/lib64 -lcudart -lpthread -o $build/backward_timing
}

for step in $steps; do
  case $step in
    tests)
      # Deterministic mode waits on other CTAs: a short limit of its own, in case it hangs.
      timeout 200 $build/tests/tileflash_tests --gtest_filter='CudaBackward*:-CudaBackward.Deterministic*:CudaBackwardSanitizer.*' > "$OUT/tests.log" 2>&1
      echo "tests rc=$?"
      timeout 60 $build/tests/tileflash_tests --gtest_filter='CudaBackward.Deterministic*' > "$OUT/tests_deterministic.log" 2>&1
      echo "deterministic tests rc=$?"
      cat "$OUT/tests.log" "$OUT/tests_deterministic.log" |
        grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[       OK|Failure|error|Which is|differs" | head -60
      ;;
    timing)
      build_timing || exit 1
      cat > $build/sdpa_backward_timing.py <<'EOF'
# PyTorch SDPA flash backend backward on the same grid, same timing method.
import sys, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
torch.manual_seed(0)
flush = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
print("d,causal,seq,ms,tflops")
for d in (64, 128, 256):
    for causal in (0, 1):
        for seq in (1024, 2048, 4096, 8192, 16384):
            b, h = 16384 // seq, 2048 // d
            q, k, v = (torch.randn(b, h, seq, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            dout = torch.randn(b, h, seq, d, device="cuda", dtype=torch.bfloat16)
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
                times = []
                for rep in range(13):
                    flush.fill_(rep)
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
                    e.record()
                    torch.cuda.synchronize()
                    if rep >= 3:
                        times.append(s.elapsed_time(e))
            times.sort()
            ms = times[len(times) // 2]
            flops = 2.5 * 4.0 * b * h * seq * seq * d / (2 if causal else 1)
            print(f"{d},{causal},{seq},{ms:.4f},{flops / ms / 1e9:.1f}", flush=True)
EOF
      timeout 100 $build/backward_timing > "$OUT/tileflash_backward.csv" 2>&1; echo "timing rc=$?"
      timeout 100 python3 $build/sdpa_backward_timing.py > "$OUT/sdpa_flash_backward.csv" 2>&1; echo "sdpa rc=$?"
      python3 - "$OUT/tileflash_backward.csv" "$OUT/sdpa_flash_backward.csv" <<'EOF' | tee "$OUT/ratios.csv"
import csv, sys
ours = {}
for r in csv.DictReader(open(sys.argv[1])):
    if r.get("deterministic") == "0":
        ours[(r["d"], r["causal"], r["seq"])] = float(r["tflops"])
print("d,causal,seq,tileflash_tflops,sdpa_flash_tflops,ratio")
for r in csv.DictReader(open(sys.argv[2])):
    key = (r["d"], r["causal"], r["seq"])
    if key in ours:
        print(f"{key[0]},{key[1]},{key[2]},{ours[key]:.1f},{float(r['tflops']):.1f},{ours[key] / float(r['tflops']):.3f}")
EOF
      grep ",1$" "$OUT/tileflash_backward.csv"
      ;;
    caps)
      build_timing || exit 1
      echo "cap,d,causal,seq,batch,heads,ms,tflops,deterministic" > "$OUT/caps.csv"
      for cap in none 166912 101376; do
        for d in 64 128 256; do
          for causal in 0 1; do
            if [ $cap = none ]; then timeout 30 $build/backward_timing $d $causal 4096
            else TILEFLASH_SMEM_LIMIT_BYTES=$cap timeout 30 $build/backward_timing $d $causal 4096; fi |
              grep -v "^d," | sed "s/^/$cap,/" >> "$OUT/caps.csv"
          done
        done
      done
      cat "$OUT/caps.csv"
      ;;
    sanitizer_small)
      TILEFLASH_SMEM_LIMIT_BYTES=101376 timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 \
        $build/tests/tileflash_tests --gtest_filter='CudaBackwardSanitizer.*' > "$OUT/sanitizer_racecheck_99k.log" 2>&1
      echo "racecheck (99 KiB cap) rc=$?"; tail -3 "$OUT/sanitizer_racecheck_99k.log"
      ;;
    profile)
      build_timing || exit 1
      # Stall reasons (cycles per issued instruction) of the main kernel, non-causal 4096.
      for d in 64 128 256; do
        timeout 100 ncu --clock-control none -k regex:backward_main_kernel --launch-skip 3 --launch-count 1 \
          --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SchedulerStats \
          --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__inst_executed_op_ldsm.sum \
          $build/backward_timing $d 0 4096 > "$OUT/ncu_d$d.txt" 2>&1
        echo "ncu d=$d rc=$?"
        grep -E "stalled_|bank_conflicts|ldsm|Issue Slots Busy|Mem Busy|Eligible Warps" "$OUT/ncu_d$d.txt" |
          awk '$NF+0 > 0.05 || /Busy|Eligible|bank|ldsm/' | sed -e 's/smsp__average_warps_issue_stalled_//' -e 's/_per_issue_active.ratio//'
      done
      ;;
    sanitizer)
      for tool in memcheck racecheck; do
        timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $build/tests/tileflash_tests \
          --gtest_filter='CudaBackwardSanitizer.*' \
          > "$OUT/sanitizer_$tool.log" 2>&1
        echo "$tool rc=$?"; tail -3 "$OUT/sanitizer_$tool.log"
      done
      ;;
  esac
done
