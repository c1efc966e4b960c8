// Where a block's rows live and which block of which (batch, head) a launched block
// computes: the grid-shaped schedule of the Ampere-class forward, and the persistent
// one of the Hopper forward.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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

// The work tiles of a persistent launch, (row block, head, batch), in the order blocks
// take them. Without a causal band every row block has the same work and row blocks of
// one (batch, head) come together, sharing K/V in L2. With one, the heaviest row blocks
// come first, in chunks of `heavy_chunk` row blocks: every head's top chunk, then every
// head's next one, each head's rows of a chunk consecutive. Blocks take tiles in
// serpentine rounds (block b takes tile b of even rounds and tile G - 1 - b of odd ones),
// so the block that took the heaviest tile of a round takes the lightest of the next,
// and the totals even out (a plain stride left the first blocks ~10 % more work at
// d = 256, seq 16k). The chunks keep a round's tiles on few heads, so the tiles reading
// one head's K/V run together and share it in L2: with one row block of every head per
// round (seq 2k, 128 heads: 124 heads at once) each tile read its K/V from memory, ~1.1
// GB at d = 128, longer than the products. Chunks of 8 rows: +15-24 % at seq 1k-2k (d =
// 128, 256); beyond 64 row blocks per head, chunks of 4 (8 lost 1-2 % at 16k, where the
// last rounds' chunks unbalance the blocks). Measured on the H200 (perf-notes-hopper.md).
struct WorkTile {
  int m_block = 0, head = 0, batch = 0;
};

struct PersistentTileOrder {
  int m_blocks = 0, heads = 0, batch = 0;
  bool heavy_first = false;
  int heavy_chunk = 1;

  __device__ __forceinline__ std::int64_t count() const {
    return static_cast<std::int64_t>(m_blocks) * heads * batch;
  }
  // The tile block `block` of `blocks` takes in round `round`; past the last tile (count()
  // or more) in every later round too.
  __device__ __forceinline__ std::int64_t tile_of(std::int64_t round, int block, int blocks) const {
    return round * blocks + (round % 2 == 0 ? block : blocks - 1 - block);
  }
  __device__ __forceinline__ WorkTile at(std::int64_t t) const {
    WorkTile w;
    if (heavy_first) {
      // Full chunks from the top row block down, then the remainder of the lowest rows.
      const std::int64_t heads_total = static_cast<std::int64_t>(heads) * batch;
      const int full_chunks = m_blocks / heavy_chunk;
      const std::int64_t full_tiles = full_chunks * heads_total * heavy_chunk;
      std::int64_t head_index;
      if (t < full_tiles) {
        const std::int64_t chunk = t / (heads_total * heavy_chunk), within = t % (heads_total * heavy_chunk);
        head_index = within / heavy_chunk;
        w.m_block = m_blocks - 1 - static_cast<int>(chunk * heavy_chunk + within % heavy_chunk);
      } else {
        const int remainder = m_blocks - full_chunks * heavy_chunk;
        head_index = (t - full_tiles) / remainder;
        w.m_block = remainder - 1 - static_cast<int>((t - full_tiles) % remainder);
      }
      w.head = static_cast<int>(head_index % heads);
      w.batch = static_cast<int>(head_index / heads);
    } else {
      w.m_block = static_cast<int>(t % m_blocks);
      const std::int64_t rest = t / m_blocks;
      w.head = static_cast<int>(rest % heads);
      w.batch = static_cast<int>(rest / heads);
    }
    return w;
  }
};

template <int kBlockM>
__device__ __forceinline__ PersistentTileOrder forward_tile_order(const sm80::AttentionArgs& args) {
  const int m_blocks = static_cast<int>((args.seq_q + kBlockM - 1) / kBlockM);
  return {m_blocks, args.heads_q, args.batch, args.window_right >= 0, m_blocks > 64 ? 4 : 8};
}

}  // namespace tileflash::cuda
