// Where a block's rows live and which block of which (batch, head) a launched block
// computes: the grid-shaped schedule of the Ampere-class forward, and the persistent
// one of the Hopper forward.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/common/persistent_tile_order.h"
#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda {

// Where sequence `batch` lives: its lengths and the index of its first row in the tensor
// (varlen: the packed row; fixed lengths: 0 within the batch entry). 32-bit, as
// cu_seqlens are (the launcher refuses longer sequences); offsets in memory are 64-bit.
struct SequenceSlice {
  int q_begin = 0, k_begin = 0;
  int seq_q = 0, seq_k = 0;
};

__device__ __forceinline__ SequenceSlice sequence_slice(const sm80::AttentionArgs& args, int batch) {
  SequenceSlice s;
  if (args.cu_seqlens_q != nullptr) {
    s.q_begin = args.cu_seqlens_q[batch];
    s.k_begin = args.cu_seqlens_k[batch];
    s.seq_q = args.cu_seqlens_q[batch + 1] - s.q_begin;
    s.seq_k = args.cu_seqlens_k[batch + 1] - s.k_begin;
  } else {
    s.seq_q = static_cast<int>(args.seq_q);
    s.seq_k = static_cast<int>(args.seq_k);
  }
  return s;
}

// Tile scheduler. Without a causal band every block of a (batch, head) has the same
// work: the grid is (m blocks, heads, batch), m fastest, so blocks sharing K/V run
// together. With one (bottom-right), later row blocks see more keys. The plain path then
// launches (heads, batch, m blocks) with m slowest and reversed, so the heaviest row
// blocks of every (batch, head) start first and the light ones fill the tail
// (longest-processing-time-first); coordinates stay plain special-register reads, which
// ptxas rematerialises instead of holding in registers. The extras path keeps the first
// grid and only reverses m within each head.
template <bool kHeavyFirst>
__device__ __forceinline__ int scheduled_m_block(bool causal) {
  if constexpr (kHeavyFirst) return static_cast<int>(gridDim.z - 1 - blockIdx.z);
  return static_cast<int>(causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x);
}
template <bool kHeavyFirst>
__device__ __forceinline__ int scheduled_head() {
  return static_cast<int>(kHeavyFirst ? blockIdx.x : blockIdx.y);
}
template <bool kHeavyFirst>
__device__ __forceinline__ int scheduled_batch() {
  return static_cast<int>(kHeavyFirst ? blockIdx.y : blockIdx.z);
}

template <class Element>
__device__ __forceinline__ Element* row_pointer(const sm80::SequenceTensor& t, int batch, std::int64_t row, int head) {
  return static_cast<Element*>(t.data) + batch * t.batch_stride + row * t.row_stride + head * t.head_stride;
}

// Chunks of 8 row blocks per head: +15-24 % at seq 1k-2k (d = 128, 256) over one row block
// of every head per round; beyond 64 row blocks per head, chunks of 4 (8 lost 1-2 % at 16k,
// where the last rounds' chunks unbalance the blocks). Measured on the H200
// (perf-notes-hopper.md, v9).
template <int kBlockM>
TF_HOST_DEVICE PersistentTileOrder forward_tile_order(const sm80::AttentionArgs& args) {
  const int m_blocks = static_cast<int>((args.seq_q + kBlockM - 1) / kBlockM);
  const bool banded = args.window_right >= 0;
  // For the tall tile only (192 rows: the grid's sequences leave a partial row block); in
  // the 128-row tile the order's extra branch cost 2 % at d = 64, 1k (H200 A/B, v16). Varlen
  // sequences end at different rows: no row block is partial in all of them.
  const bool partial_last = kBlockM == 192 && !banded && args.cu_seqlens_q == nullptr && args.seq_q % kBlockM != 0;
  return {m_blocks, args.heads_q, args.batch, banded, m_blocks > 64 ? 4 : 8, partial_last};
}

}  // namespace tileflash::cuda
