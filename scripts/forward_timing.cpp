// Times tileflash's CUDA forward on the grid of shared/ANCHORS.md (bf16, b * s = 16384
// tokens, hidden 2048, d = 64/128/256, causal and not) with CUDA events, median of 20
// after warm-up, and prints CSV: d,causal,seq,batch,heads,ms,tflops.
// Optional arguments narrow the grid: forward_timing [head_dim [seq]].
// Built and run by scripts/device_check_forward.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tileflash/tileflash.h"

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

// Random bf16 values in about [-2, 2): random mantissa and sign, exponents 126..127.
std::vector<std::uint16_t> random_bf16(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<std::uint16_t> values(count);
  for (auto& x : values) {
    const std::uint64_t r = gen();
    x = static_cast<std::uint16_t>(((r & 1) << 15) | ((126 + ((r >> 1) & 1)) << 7) | ((r >> 2) & 0x7F));
  }
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  constexpr std::int64_t kTokens = 16384, kHidden = 2048;
  std::vector<std::int64_t> seqs = {512, 1024, 2048, 4096, 8192, 16384};
  std::vector<std::int64_t> head_dims = {64, 128, 256};
  if (argc > 1) head_dims = {std::atoll(argv[1])};
  if (argc > 2) seqs = {std::atoll(argv[2])};
  const std::size_t elements = kTokens * kHidden;
  std::vector<void*> buffers(4);
  for (int i = 0; i < 4; ++i) {
    check(cudaMalloc(&buffers[i], elements * 2), "cudaMalloc");
    const auto host = random_bf16(elements, 17 + i);
    check(cudaMemcpy(buffers[i], host.data(), elements * 2, cudaMemcpyHostToDevice), "upload");
  }
  float* lse = nullptr;
  check(cudaMalloc(&lse, kTokens * kHidden / 64 * sizeof(float)), "cudaMalloc lse");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");

  std::printf("d,causal,seq,batch,heads,ms,tflops\n");
  for (std::int64_t d : head_dims)
    for (bool causal : {false, true})
      for (std::int64_t seq : seqs) {
        const std::int64_t batch = kTokens / seq, heads = kHidden / d;
        using tileflash::DType;
        using tileflash::DeviceType;
        using tileflash::TensorView;
        tileflash::ForwardParams p;
        p.q = TensorView::contiguous(buffers[0], DType::bfloat16, {batch, seq, heads, d}, DeviceType::cuda);
        p.k = TensorView::contiguous(buffers[1], DType::bfloat16, {batch, seq, heads, d}, DeviceType::cuda);
        p.v = TensorView::contiguous(buffers[2], DType::bfloat16, {batch, seq, heads, d}, DeviceType::cuda);
        p.out = TensorView::contiguous(buffers[3], DType::bfloat16, {batch, seq, heads, d}, DeviceType::cuda);
        p.lse = TensorView::contiguous(lse, DType::float32, {batch, heads, seq}, DeviceType::cuda);
        p.causal = causal;
        for (int i = 0; i < 3; ++i) tileflash::forward(p);
        std::vector<float> times;
        for (int i = 0; i < 20; ++i) {
          check(cudaEventRecord(start), "record");
          tileflash::forward(p);
          check(cudaEventRecord(stop), "record");
          check(cudaEventSynchronize(stop), "sync");
          float ms = 0;
          check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
          times.push_back(ms);
        }
        check(cudaGetLastError(), "forward");
        std::sort(times.begin(), times.end());
        const double ms = times[times.size() / 2];
        const double flops = 4.0 * batch * heads * seq * seq * d / (causal ? 2.0 : 1.0);
        std::printf("%lld,%d,%lld,%lld,%lld,%.4f,%.1f\n", static_cast<long long>(d), causal ? 1 : 0,
                    static_cast<long long>(seq), static_cast<long long>(batch), static_cast<long long>(heads), ms,
                    flops / ms / 1e9);
        std::fflush(stdout);
      }
  return 0;
}
