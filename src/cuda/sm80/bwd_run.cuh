// Host side of one backward call for one head-dim tile and shape variant: workspace on the
// stream, then the kernels of bwd_kernel.cuh. Instantiated per (tile, dtype) by
// bwd_tile.cu.in, every distinct variant with it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda/common/stream_workspace.h"
#include "cuda/sm80/bwd_kernel.cuh"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda::sm80 {

inline unsigned blocks_for(std::int64_t items, int per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

// D = rowsum(dO * O) into p.dout_dot_out, and `cleared_bytes` (a multiple of 16) zeroed
// from `cleared` on: backward_dot_kernel, with as many lanes per row as the head dim needs.
template <class Element>
void launch_backward_dot(const BackwardKernelParams& p, void* cleared, std::int64_t cleared_bytes,
                         cudaStream_t stream) {
  const std::int64_t rows = p.rows_q * p.attn.heads_q;
  if (rows == 0 && cleared_bytes == 0) return;
  const auto launch = [&](auto kernel, int lanes_per_row) {
    const unsigned blocks = blocks_for(rows * lanes_per_row, kDotThreads);
    kernel<<<blocks > 0 ? blocks : 1u, kDotThreads, 0, stream>>>(p, static_cast<float4*>(cleared), cleared_bytes / 16);
  };
  if (p.attn.head_dim <= 64) launch(backward_dot_kernel<Element, 8>, 8);
  else if (p.attn.head_dim <= 128) launch(backward_dot_kernel<Element, 16>, 16);
  else launch(backward_dot_kernel<Element, 32>, 32);
  check_cuda(cudaGetLastError(), "backward rowsum(dO * O) launch");
}

template <int kHeadDim, class Element, int kVariant>
void run_backward_shape(const BackwardKernelParams& call, cudaStream_t stream) {
  using Traits = BackwardKernelTraits<kHeadDim, Element, kVariant>;
  BackwardKernelParams p = call;
  const AttentionArgs& a = p.attn;
  p.m_blocks = static_cast<int>((a.seq_q + Traits::kBlockM - 1) / Traits::kBlockM);

  // One allocation: D, the dQ accumulator and (deterministic mode) the turn counters, padded
  // so it is never empty (with seq_q = 0 the key-block kernel still writes zero dK, dV).
  constexpr std::int64_t kAlign = 256;
  const auto aligned = [](std::int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; };
  const std::int64_t dot_bytes = aligned(p.rows_q * a.heads_q * 4);
  const std::int64_t accum_bytes = aligned(a.heads_q * dq_accum_rows(p) * kHeadDim * 4);
  const std::int64_t semaphore_bytes = p.deterministic ? aligned(std::int64_t{4} * a.batch * a.heads_q * p.m_blocks) : 0;
  const std::int64_t cleared_bytes = accum_bytes + semaphore_bytes;
  StreamWorkspace workspace(dot_bytes + cleared_bytes + kAlign, stream, "backward workspace allocation");
  p.dout_dot_out = reinterpret_cast<float*>(workspace.data());
  p.dq_accum = reinterpret_cast<float*>(workspace.data() + dot_bytes);
  p.dq_semaphore = p.deterministic ? reinterpret_cast<int*>(workspace.data() + dot_bytes + accum_bytes) : nullptr;
  launch_backward_dot<Element>(p, workspace.data() + dot_bytes, cleared_bytes, stream);

  const std::int64_t key_blocks = (a.seq_k + Traits::kBlockN - 1) / Traits::kBlockN;
  if (key_blocks > 0 && a.batch > 0) {
    auto* kernel = a.has_logit_extras() ? backward_main_kernel<kHeadDim, Element, kVariant, true>
                                        : backward_main_kernel<kHeadDim, Element, kVariant, false>;
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes),
               "backward shared memory opt-in");
    const dim3 grid = Traits::heads_fastest(a, a.has_logit_extras())
                          ? dim3(static_cast<unsigned>(a.heads_kv), static_cast<unsigned>(key_blocks),
                                 static_cast<unsigned>(a.batch))
                          : dim3(static_cast<unsigned>(key_blocks), static_cast<unsigned>(a.heads_kv),
                                 static_cast<unsigned>(a.batch));
    kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(p);
    check_cuda(cudaGetLastError(), "backward main kernel launch");
  }

  if (a.seq_q > 0 && a.batch > 0) {
    constexpr int kConvertThreads = kHeadDim;  // one per item: 8 columns of two rows
    const dim3 grid(static_cast<unsigned>((a.seq_q + 15) / 16), static_cast<unsigned>(a.heads_q),
                    static_cast<unsigned>(a.batch));
    backward_dq_convert_kernel<kHeadDim, Element><<<grid, kConvertThreads, 0, stream>>>(p);
    check_cuda(cudaGetLastError(), "backward dq conversion launch");
  }
  constexpr int kElementwiseThreads = 256;
  const std::int64_t key_chunks = p.rows_k * a.heads_kv * (a.head_dim / 8);
  if (a.cu_seqlens_k != nullptr && key_chunks > 0) {
    backward_zero_unused_keys_kernel<Element>
        <<<blocks_for(key_chunks, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(p);
    check_cuda(cudaGetLastError(), "backward unused key rows launch");
  }
}

template <int kHeadDim, class Element, int... kVariants>
void run_backward_variant(int variant, const BackwardKernelParams& call, cudaStream_t stream,
                          std::integer_sequence<int, kVariants...>) {
  ((variant == kVariants ? run_backward_shape<kHeadDim, Element, backward_distinct_variant(kHeadDim, kVariants)>(call, stream)
                         : void()),
   ...);
}

// `variant` in [0, kBackwardVariants), chosen by bwd_launch.cu from the device's shared memory.
template <int kHeadDim, class Element>
void run_backward_tile(int variant, const BackwardKernelParams& call, cudaStream_t stream) {
  run_backward_variant<kHeadDim, Element>(variant, call, stream, std::make_integer_sequence<int, kBackwardVariants>{});
}

}  // namespace tileflash::cuda::sm80
