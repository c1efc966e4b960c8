// The Hopper FlashAttention backward kernel (sm_90a): per block of 128 keys, TMA loads of
// the query blocks that reach them, wgmma products, and dQ added to memory by bulk
// reductions.
//
// Per query block, in the transposed orientation that keeps P and dS in registers for
// the key-side products (rows are keys, columns queries), each consumer warpgroup (64 keys):
//   S^T = K Q^T, dP^T = V dO^T             wgmma, both operands K-major in shared memory
//   P^T = exp(S^T * scale - lse)           the forward's probabilities, recomputed
//   dS^T = P^T * (dP^T - D)
//   dV += P^T dO, dK += dS^T Q             wgmma with P^T, dS^T from registers
// and hands dS^T over in shared memory for
//   dQ = dS K                              dS^T as the M-major A operand
// computed by warpgroup 0 up to head dim 96 and by the consumers at 128 (bwd_launch.h
// says why), then added to an fp32 accumulator by bulk reductions (a last kernel scales
// and converts it). Warp 0 of warpgroup 0 also loads: K and V once, then per query block Q
// and dO through a ring of kStages slots (TMA) plus the block's lse and D = rowsum(dO * O)
// (plain loads, so rows past the end read nothing).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/attention_math.h"
#include "cuda/common/fragment.cuh"
#include "cuda/common/mask.cuh"
#include "cuda/common/softmax.cuh"
#include "cuda/common/tile_scheduler.cuh"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm80/bwd_run.cuh"
#include "cuda/sm90/bwd_launch.h"
#include "cuda/sm90/hopper.cuh"
#include "cuda/sm90/pipeline.cuh"
#include "cuda/sm90/wgmma_generated.cuh"

namespace tileflash::cuda::sm90 {

// Shared memory of one block: K, V, kStages Q and dO slots (64-column swizzle atoms,
// 1024-byte aligned), the dS^T buffers, the dQ staging, the per-slot row statistics, then
// the barriers.
template <class Tile>
struct BackwardSharedMemory {
  unsigned char* base;

  __device__ unsigned char* k() const { return base; }
  __device__ unsigned char* v() const { return base + Tile::kKVBytes; }
  __device__ unsigned char* q(int stage) const { return base + 2 * Tile::kKVBytes + stage * Tile::kRowBytes; }
  __device__ unsigned char* dout(int stage) const {
    return base + 2 * Tile::kKVBytes + (Tile::kStages + stage) * Tile::kRowBytes;
  }
  __device__ unsigned char* ds(int buffer) const {
    return base + 2 * Tile::kKVBytes + 2 * Tile::kStages * Tile::kRowBytes + buffer * Tile::kDsBytes;
  }
  __device__ float* dq_stage(int stage) const {
    return reinterpret_cast<float*>(ds(Tile::kDsBuffers) + stage * Tile::kDqStageBytes);
  }
  __device__ float* lse(int stage) const { return dq_stage(Tile::kDqStages) + stage * 2 * Tile::kBlockM; }
  __device__ float* dot(int stage) const { return lse(stage) + Tile::kBlockM; }
  __device__ std::uint64_t* barriers() const { return reinterpret_cast<std::uint64_t*>(lse(Tile::kStages)); }
  __device__ std::uint64_t* kv_full() const { return barriers(); }
  __device__ std::uint64_t* rows_full(int stage) const { return barriers() + 1 + stage; }
  __device__ std::uint64_t* rows_empty(int stage) const { return barriers() + 1 + Tile::kStages + stage; }
  // Complete when the four warps of consumer warpgroup `consumer` have written their rows
  // of dS^T buffer `buffer`, and when warpgroup 0's dQ products have read the buffer.
  __device__ std::uint64_t* ds_full(int consumer, int buffer) const {
    return barriers() + 1 + 2 * Tile::kStages + consumer * Tile::kDsBuffers + buffer;
  }
  __device__ std::uint64_t* ds_empty(int buffer) const {
    return barriers() + 1 + 2 * Tile::kStages + Tile::kConsumerWarpgroups * Tile::kDsBuffers + buffer;
  }
};

// Named barrier of the two consumer warpgroups before the dK/dV staging (ids 1 and 2 sync
// them inside the loop).
constexpr int kEpilogueBarrier = 3;

// One query block of the walk: its query head and its index along the sequence.
struct QueryBlock {
  int head = 0, m_block = 0;
};

// What warpgroup 0 and the consumers of one block derive alike from its coordinates:
// the sequence, and the query blocks (of every query head of the kv head's group) whose
// band reaches the block's keys, walked as iterations head-major.
struct KeyBlockWork {
  SequenceSlice seq;
  int kv_head = 0, batch = 0, key_begin = 0;
  int group = 1, m_begin = 0, blocks_per_head = 0, iterations = 0;
  // Query blocks [unmasked_first, unmasked_end) need no mask against the block's keys.
  int unmasked_first = 0, unmasked_end = 0;
  detail::BandMask mask;
  std::int64_t q_packed_begin = 0;  // the sequence's first row among all query rows
  int tma_batch = 0;                // varlen tensors are one packed batch entry addressed by row
  QueryBlock start;                 // where the walk starts

  // The walk advances by a step, not by dividing the iteration: at the loop top a division
  // is a chain of conversions and a reciprocal on the MUFU pipe that the exponentials of
  // the other warps on the scheduler keep busy.
  __device__ __forceinline__ QueryBlock first() const { return start; }
  __device__ __forceinline__ void advance(QueryBlock& b) const {
    if (++b.m_block == m_begin + blocks_per_head) {
      b.m_block = m_begin;
      ++b.head;
    }
  }
};

// The first row of sequence `batch` among all query rows (the rows of dout_dot_out).
__device__ __forceinline__ std::int64_t packed_q_begin(const sm80::AttentionArgs& a, const SequenceSlice& seq,
                                                       int batch) {
  return a.cu_seqlens_q != nullptr ? seq.q_begin : static_cast<std::int64_t>(batch) * a.seq_q;
}

// The launch order of the key blocks. The grid is (key blocks, kv heads, sequences), key
// blocks fastest: one head's blocks run together and share its Q and dO in L2. Under a
// causal band (bottom-right) lower key blocks are reached by more query rows, and in that
// order a call's last heads started their heaviest blocks last: a model of the launch
// (greedy, like the hardware) put the blocks' end at 93.5-97 % of an even spread at 1k-8k
// (d = 128 and 64). There the grid is (kv heads, key blocks, sequences): each sequence's
// heads take their first key block, then their second, the heaviest first (98-99.8 % in the
// model). From 128 key blocks per head (16k) the head order already balances (99.3 %), and
// the heads' Q and dO no longer fit in L2 together (a heaviest-first order over groups of
// 16 heads lost 2-3 % there; H200 A/Bs, perf-notes-hopper.md backward v15).
// sm80::key_blocks_heads_fastest (shared with the Ampere-class backward) says when.

// A block's key block, kv head and sequence.
struct KeyBlockCoordinates {
  int key_block = 0, kv_head = 0, batch = 0;
};

// The main grid's coordinates of this block, read from blockIdx where they are used (the
// special registers are cheap to read again; decoded coordinates would hold registers).
template <int kBlockN>
__device__ __forceinline__ KeyBlockCoordinates main_grid_coordinates(const sm80::AttentionArgs& a) {
  const bool heads_fastest = key_blocks_heads_fastest(a, kBlockN);
  return {static_cast<int>(heads_fastest ? blockIdx.y : blockIdx.x),
          static_cast<int>(heads_fastest ? blockIdx.x : blockIdx.y), static_cast<int>(blockIdx.z)};
}

// The main grid's launch index of this block (x fastest, as the hardware starts them).
__device__ __forceinline__ std::int64_t main_grid_launch_index() {
  return blockIdx.x + static_cast<std::int64_t>(gridDim.x) * (blockIdx.y + static_cast<std::int64_t>(gridDim.y) * blockIdx.z);
}

template <int kBlockM, int kBlockN>
__device__ __forceinline__ KeyBlockWork key_block_work(const sm80::AttentionArgs& a, KeyBlockCoordinates at) {
  KeyBlockWork w;
  w.key_begin = at.key_block * kBlockN;
  w.kv_head = at.kv_head;
  w.batch = at.batch;
  w.seq = sequence_slice(a, w.batch);
  w.q_packed_begin = packed_q_begin(a, w.seq, w.batch);
  w.tma_batch = a.cu_seqlens_q != nullptr ? 0 : w.batch;
  w.mask = detail::BandMask{w.seq.seq_q, w.seq.seq_k, a.window_left, a.window_right};
  w.group = a.heads_q / a.heads_kv;
  if (w.key_begin >= w.seq.seq_k) return w;
  const detail::RowBlockRange unmasked = detail::unmasked_row_blocks(w.mask, w.key_begin, w.key_begin + kBlockN, kBlockM);
  w.unmasked_first = static_cast<int>(unmasked.first);
  w.unmasked_end = static_cast<int>(unmasked.end);
  // Row i sees columns up to i + shift + window_right and from i + shift - window_left on.
  const std::int64_t shift = static_cast<std::int64_t>(w.seq.seq_k) - w.seq.seq_q;
  std::int64_t row_begin = 0, row_end = w.seq.seq_q;
  if (a.window_right >= 0) row_begin = max(row_begin, w.key_begin - shift - a.window_right);
  if (a.window_left >= 0) row_end = min(row_end, w.key_begin + kBlockN - shift + a.window_left);
  if (row_end <= row_begin) return w;
  w.m_begin = static_cast<int>(row_begin / kBlockM);
  w.blocks_per_head = static_cast<int>((row_end + kBlockM - 1) / kBlockM) - w.m_begin;
  w.iterations = w.group * w.blocks_per_head;
  w.start = {w.kv_head * w.group, w.m_begin};
  return w;
}

// Piece `piece` of a cut key block (tail_split.h): the block's walk from its iteration
// begin to its iteration end, one division at the start.
__device__ __forceinline__ void restrict_to_piece(KeyBlockWork& w, int piece, int pieces) {
  const IterationRange range = piece_iterations(w.iterations, piece, pieces);
  if (w.blocks_per_head > 0)
    w.start = {w.kv_head * w.group + range.begin / w.blocks_per_head, w.m_begin + range.begin % w.blocks_per_head};
  w.iterations = range.end - range.begin;
}

// The coordinates of the cut key block whose piece this block of the pieces' launch (one
// dimension, a block's pieces together) runs: the main grid's launch index
// plan.first_block + blockIdx.x / pieces, never under a band, so key blocks fastest.
__device__ __forceinline__ KeyBlockCoordinates cut_block_coordinates(const sm80::AttentionArgs& a, const TailSplit& plan,
                                                                     std::int64_t key_blocks) {
  const std::int64_t index = plan.first_block + blockIdx.x / plan.pieces;
  const std::int64_t head_index = index / key_blocks;
  return {static_cast<int>(index % key_blocks), static_cast<int>(head_index % a.heads_kv),
          static_cast<int>(head_index / a.heads_kv)};
}

// Warp 0 of warpgroup 0: lane 0 issues the copies of query block `block` (walk position
// `iteration`) into its ring slot, all lanes load the block's row statistics.
template <class Tile>
__device__ __forceinline__ void load_query_block(const BackwardTensorMaps& maps, const sm80::BackwardKernelParams& p,
                                                 const BackwardSharedMemory<Tile>& smem, const KeyBlockWork& w,
                                                 int iteration, QueryBlock block) {
  constexpr int kBlockM = Tile::kBlockM;
  const sm80::AttentionArgs& a = p.attn;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int stage = iteration % Tile::kStages;
  const std::uint32_t parity = static_cast<std::uint32_t>(iteration / Tile::kStages) & 1u;
  const int head = block.head;
  const int m0 = block.m_block * kBlockM;
  mbarrier_wait(smem.rows_empty(stage), parity ^ 1u);
  if (lane == 0) {
    load_tile<Tile, kBlockM>(smem.q(stage), &maps.q, smem.rows_full(stage), w.seq.q_begin + m0, head, w.tma_batch);
    load_tile<Tile, kBlockM>(smem.dout(stage), &maps.dout, smem.rows_full(stage), w.seq.q_begin + m0, head,
                             w.tma_batch);
  }
  // The log-sum-exp in base 2. Rows past the sequence (and rows that see no key, lse =
  // -inf) get +inf: their P is exp2(-inf) = 0 without a NaN from -inf - (-inf).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = lane + 32 * half;
    const int i = m0 + r;
    float lse = INFINITY, dot = 0.0f;
    if (i < w.seq.seq_q) {
      const float stored = a.lse[w.batch * a.lse_batch_stride + head * a.lse_head_stride +
                                 (static_cast<std::int64_t>(w.seq.q_begin) + i) * a.lse_row_stride];
      if (stored != -INFINITY) lse = stored * kLog2e;
      dot = p.dout_dot_out[head * p.rows_q + w.q_packed_begin + i];
    }
    smem.lse(stage)[r] = lse;
    smem.dot(stage)[r] = dot;
  }
  mbarrier_arrive(smem.rows_full(stage));
}

// Adds a warp's 16 rows of a 64 x kDqCols dQ product to the accumulator block at `dst`:
// staged in register order at `stage`, then one bulk reduction. The staging space is free
// once the warp's reduction kPendingReads + 1 reductions ago has read it.
template <int kDqCols, int kPendingReads>
__device__ __forceinline__ void reduce_dq_rows(const AccumulatorTile<1, kDqCols / 8>& dq, float* stage, float* dst) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (lane == 0) bulk_wait_read<kPendingReads>();
  __syncwarp();
#pragma unroll
  for (int i = 0; i < kDqCols / 8; ++i)
    *reinterpret_cast<float4*>(stage + (i * 32 + lane) * 4) =
        make_float4(dq.value[0][i][0], dq.value[0][i][1], dq.value[0][i][2], dq.value[0][i][3]);
  fence_async_shared();
  __syncwarp();
  if (lane == 0) {
    bulk_reduce_add(dst, stage, kDqCols / 8 * 32 * 4 * 4);
    bulk_commit();
  }
}

// The accumulator block of query rows [m0, m0 + 64) of sequence `batch` (its first row is
// q_packed_begin among all query rows) and query head `head` (bwd_launch.h has the layout).
template <class Tile>
__device__ __forceinline__ float* dq_accumulator_block(const sm80::BackwardKernelParams& p, int head,
                                                       std::int64_t q_packed_begin, int batch, int m0) {
  return p.dq_accum + (head * dq_accum_rows_per_head(p.rows_q, p.attn.batch) + q_packed_begin +
                       static_cast<std::int64_t>(Tile::kBlockM) * batch + m0) *
                          Tile::kHeadDim;
}
template <class Tile>
__device__ __forceinline__ float* dq_accumulator_block(const sm80::BackwardKernelParams& p, const KeyBlockWork& w,
                                                       QueryBlock block) {
  return dq_accumulator_block<Tile>(p, block.head, w.q_packed_begin, w.batch, block.m_block * Tile::kBlockM);
}

// dq = dS K[:, columns of the K tile at k_columns] over the block's 128 keys, dS^T (at
// ds_address) read as the M-major A operand and K as the N-major B operand; one wgmma group.
template <class Tile, class Element>
__device__ __forceinline__ void issue_dq_product(AccumulatorTile<1, Tile::kDqCols / 8>& dq, std::uint32_t ds_address,
                                                 std::uint32_t k_columns) {
  const std::uint64_t ds = n_major_descriptor(ds_address, Tile::kDsBytes);
  const std::uint64_t k = n_major_descriptor(k_columns, Tile::kBlockN * 128);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < Tile::kBlockN / 16; ++kk)
    Wgmma<Element, Tile::kDqCols>::ss_mn_major(dq, advance_descriptor(ds, kk * 16 * 128),
                                               advance_descriptor(k, kk * 16 * 128), kk > 0);
  wgmma_commit();
}

// Warpgroup 0: the loads (warp 0) and, unless the consumers do, dQ = dS K of every
// query block.
template <class Tile, class Element>
__device__ __forceinline__ void load_and_reduce_dq(const BackwardTensorMaps& maps, const sm80::BackwardKernelParams& p,
                                                   const BackwardSharedMemory<Tile>& smem, const KeyBlockWork& w) {
  constexpr int kBlockN = Tile::kBlockN, kDqCols = Tile::kDqCols;
  constexpr int kWarpFloats = kDqCols / 8 * 32 * 4;  // a warp's 16 rows of a dQ product
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp = static_cast<int>(threadIdx.x / 32);
  QueryBlock next_load = w.first();  // warp 0's next block to load
  if (warp == 0) {
    if (lane == 0) {
      prefetch_tensor_map(&maps.q);
      prefetch_tensor_map(&maps.dout);
      const int key_row = w.seq.k_begin + w.key_begin;
      load_tile<Tile, kBlockN>(smem.k(), &maps.k, smem.kv_full(), key_row, w.kv_head, w.tma_batch);
      load_tile<Tile, kBlockN>(smem.v(), &maps.v, smem.kv_full(), key_row, w.kv_head, w.tma_batch);
    }
    // With the consumers computing dQ, warp 0 only loads, each slot as it frees.
    const int ahead = Tile::kConsumersComputeDq ? w.iterations : Tile::kStages;
    for (int i = 0; i < ahead && i < w.iterations; ++i, w.advance(next_load))
      load_query_block<Tile>(maps, p, smem, w, i, next_load);
  }
  if constexpr (!Tile::kConsumersComputeDq) {
    const std::uint32_t k_tile = ptx::smem_address(smem.k());
    mbarrier_wait(smem.kv_full(), 0);
    QueryBlock block = w.first();
    for (int iteration = 0; iteration < w.iterations; ++iteration, w.advance(block)) {
      const int buffer = iteration & 1;
      const std::uint32_t parity = static_cast<std::uint32_t>(iteration >> 1) & 1u;
      const std::uint32_t ds_address = ptx::smem_address(smem.ds(buffer));
      for (int c = 0; c < Tile::kConsumerWarpgroups; ++c) mbarrier_wait(smem.ds_full(c, buffer), parity);
      AccumulatorTile<1, kDqCols / 8> dq;
      issue_dq_product<Tile, Element>(dq, ds_address, k_tile);
      // The slot of block iteration + kStages frees once the consumers finish this block.
      if (warp == 0 && iteration + Tile::kStages < w.iterations) {
        load_query_block<Tile>(maps, p, smem, w, iteration + Tile::kStages, next_load);
        w.advance(next_load);
      }
      wgmma_wait<0>();
      pin_accumulators(dq);
      __syncwarp();
      if (lane == 0) mbarrier_arrive(smem.ds_empty(buffer));
      reduce_dq_rows<kDqCols, Tile::kDqStages - 1>(dq, smem.dq_stage(iteration % Tile::kDqStages) + warp * kWarpFloats,
                                                   dq_accumulator_block<Tile>(p, w, block) + warp * kWarpFloats);
    }
    // Only the reads of the staging must finish before the block exits; the additions
    // themselves complete before the kernel does, ahead of the conversion kernel.
    if (lane == 0) bulk_wait_read<0>();
  }
}

// A piece of a cut key block (tail_split.h), after its walk: adds the consumers' dK and dV
// to the block's slot of partial sums and counts the piece in. Only the block's last
// piece to arrive goes on: it reads the sums (its own included) back into dk and dv.
// Each consumer thread's float4 i sits at (i * threads + thread) * 4, so a warp's 16-byte
// adds and reads cover 512 contiguous bytes.
template <class Tile>
__device__ __forceinline__ bool gather_piece_sums(const BackwardTailPieces& tail,
                                                  AccumulatorTile<1, Tile::kOwnCols / 8>& dk,
                                                  AccumulatorTile<1, Tile::kOwnCols / 8>& dv) {
  constexpr int kThreads = 128 * Tile::kConsumerWarpgroups, kTiles = Tile::kOwnCols / 8;
  static_assert(Tile::kPieceSumFloats == 2 * kTiles * kThreads * 4, "one float4 per thread and tile of dK and dV");
  const int thread = static_cast<int>(threadIdx.x) - 128;
  const int cut_block = static_cast<int>(blockIdx.x) / tail.plan.pieces;
  float* const sums = tail.partials + static_cast<std::int64_t>(cut_block) * Tile::kPieceSumFloats;
  const auto at = [&](int tile) { return reinterpret_cast<float4*>(sums + (tile * kThreads + thread) * 4); };
#pragma unroll
  for (int ni = 0; ni < kTiles; ++ni) {
    atomicAdd(at(ni), make_float4(dk.value[0][ni][0], dk.value[0][ni][1], dk.value[0][ni][2], dk.value[0][ni][3]));
    atomicAdd(at(kTiles + ni),
              make_float4(dv.value[0][ni][0], dv.value[0][ni][1], dv.value[0][ni][2], dv.value[0][ni][3]));
  }
  // Every thread's additions are visible device-wide before the piece is counted (the
  // counting thread's atomic comes after the barrier), and the last piece's reads come
  // after it saw the count.
  __threadfence();
  named_barrier_sync(kEpilogueBarrier, kThreads);
  const bool last = thread == 0 && atomicAdd(tail.arrivals + cut_block, 1u) == static_cast<unsigned>(tail.plan.pieces - 1);
  if (!named_barrier_any(kEpilogueBarrier, kThreads, last)) return false;
  __threadfence();
#pragma unroll
  for (int ni = 0; ni < kTiles; ++ni) {
    const float4 k = __ldcg(at(ni)), v = __ldcg(at(kTiles + ni));
    dk.value[0][ni][0] = k.x, dk.value[0][ni][1] = k.y, dk.value[0][ni][2] = k.z, dk.value[0][ni][3] = k.w;
    dv.value[0][ni][0] = v.x, dv.value[0][ni][1] = v.y, dv.value[0][ni][2] = v.z, dv.value[0][ni][3] = v.w;
  }
  return true;
}

// A consumer warpgroup: dK and dV of its 64 keys, and dS^T of its keys for the dQ product.
template <class Tile, class Element, bool kTailPiece>
__device__ __forceinline__ void consume_query_blocks(const sm80::BackwardKernelParams& p,
                                                     const BackwardSharedMemory<Tile>& smem, const KeyBlockWork& w,
                                                     const BackwardTailPieces& tail, int consumer) {
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN, kHeadDim = Tile::kHeadDim;
  const sm80::AttentionArgs& a = p.attn;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp = static_cast<int>(threadIdx.x / 32) % 4;
  // This warpgroup's first key within the block and first dK/dV column.
  const int key_base = Tile::kColumnSplit ? 0 : 64 * consumer;
  const int col_base = Tile::kColumnSplit ? consumer * Tile::kOwnCols : 0;
  const int key_row0 = key_base + 16 * warp;  // this warp's first key within the block
  const int pair = 2 * lane_in_group();
  const float scale_log2 = a.scale * kLog2e;

  AccumulatorTile<1, Tile::kOwnCols / 8> dk, dv;
  dk.fill(0.0f);
  dv.fill(0.0f);

  if (w.iterations > 0) {
    const std::uint64_t k_descriptor = k_major_descriptor(ptx::smem_address(smem.k()) + key_base * 128);
    const std::uint64_t v_descriptor = k_major_descriptor(ptx::smem_address(smem.v()) + key_base * 128);
    // The 64-column atoms of this warpgroup's columns in a Q or dO tile.
    const std::uint32_t own_atoms = col_base / 64 * kBlockM * 128;
    const auto release = [&](std::uint64_t* barrier) {
      __syncwarp();
      if (lane == 0) mbarrier_arrive(barrier);
    };

    mbarrier_wait(smem.kv_full(), 0);
    RingPosition<Tile::kStages> slot;
    QueryBlock block = w.first();
    for (int iteration = 0; iteration < w.iterations; ++iteration, slot.advance(), w.advance(block)) {
      const int m0 = block.m_block * kBlockM;
      const bool inside_band = block.m_block >= w.unmasked_first && block.m_block < w.unmasked_end;
      const std::uint32_t q_tile = ptx::smem_address(smem.q(slot.stage));
      const std::uint32_t dout_tile = ptx::smem_address(smem.dout(slot.stage));
      const int ds_buffer = iteration & 1;
      const std::uint32_t ds_parity = static_cast<std::uint32_t>(iteration >> 1) & 1u;
      mbarrier_wait(smem.rows_full(slot.stage), slot.parity);
      // S^T and dP^T, two groups: the exponentials of S^T run under the dP^T product.
      AccumulatorTile<1, kBlockM / 8> scores, dp;
      // acc = rows of K or V (this warpgroup's keys) times the query block's Q or dO rows.
      const auto issue_key_products = [&](AccumulatorTile<1, kBlockM / 8>& acc, std::uint64_t keys,
                                          std::uint32_t query_tile) {
        const std::uint64_t query = k_major_descriptor(query_tile);
#pragma unroll
        for (int ks = 0; ks < kHeadDim / 16; ++ks) {
          const std::uint32_t column = 32 * (ks % 4);
          Wgmma<Element, kBlockM>::ss(acc, advance_descriptor(keys, (ks / 4) * kBlockN * 128 + column),
                                      advance_descriptor(query, (ks / 4) * kBlockM * 128 + column), ks > 0);
        }
        wgmma_commit();
      };
      // acc (dV or dK of this warpgroup's keys and columns) += P^T or dS^T from registers
      // times the query block's dO or Q rows.
      const auto issue_register_products = [&](AccumulatorTile<1, Tile::kOwnCols / 8>& acc,
                                               const std::uint32_t (&operand)[kBlockM / 16][4],
                                               std::uint32_t query_tile) {
        const std::uint64_t query = n_major_descriptor(query_tile + own_atoms, kBlockM * 128);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBlockM / 16; ++kk)
          Wgmma<Element, Tile::kOwnCols>::rs(acc, operand[kk], advance_descriptor(query, kk * 16 * 128), 1);
        wgmma_commit();
      };
      wgmma_fence();
      issue_key_products(scores, k_descriptor, q_tile);
      issue_key_products(dp, v_descriptor, dout_tile);
      wgmma_wait<1>();
      pin_accumulators(scores);

      // P^T = exp2(s * scale * log2(e) - lse * log2(e)), one FMA and one exp2 per score.
      if (!inside_band)
        apply_band_mask_transposed(scores, w.mask, static_cast<std::int64_t>(w.key_begin) + key_row0, m0);
      const float* const lse = smem.lse(slot.stage);
      const float* const dot = smem.dot(slot.stage);
#pragma unroll
      for (int ni = 0; ni < kBlockM / 8; ++ni) {
        const float2 l = *reinterpret_cast<const float2*>(lse + 8 * ni + pair);
#pragma unroll
        for (int e = 0; e < 4; ++e)
          scores.value[0][ni][e] = ptx::exp2_approx(fmaf(scores.value[0][ni][e], scale_log2, -(e % 2 == 0 ? l.x : l.y)));
      }
      std::uint32_t p_frag[kBlockM / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBlockM / 16; ++kk) accumulator_as_a<Element>(scores, 0, kk, p_frag[kk]);
      issue_register_products(dv, p_frag, dout_tile);

      // dS^T = P^T (dP^T - D), with P^T as rounded for dV (as standard attention at this
      // precision does) where the fp32 P^T would not fit in registers until here.
      wgmma_wait<1>();  // dP^T (committed before dV) has completed
      pin_accumulators(dp);
#pragma unroll
      for (int kk = 0; kk < kBlockM / 16; ++kk)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int ni = 2 * kk + j / 2, e = 2 * (j % 2);
          const float2 prob = Tile::kDsFromFloatP ? make_float2(scores.value[0][ni][e], scores.value[0][ni][e + 1])
                                                  : ptx::unpack2<Element>(p_frag[kk][j]);
          const float2 d = *reinterpret_cast<const float2*>(dot + 8 * ni + pair);
          dp.value[0][ni][e] = prob.x * (dp.value[0][ni][e] - d.x);
          dp.value[0][ni][e + 1] = prob.y * (dp.value[0][ni][e + 1] - d.y);
        }
      std::uint32_t ds_frag[kBlockM / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBlockM / 16; ++kk) accumulator_as_a<Element>(dp, 0, kk, ds_frag[kk]);
      issue_register_products(dk, ds_frag, q_tile);

      // dS^T into shared memory with the 128-byte swizzle (16-byte chunk index XOR row % 8),
      // once warpgroup 0's products have read the buffer's previous contents: key row r
      // holds 64 queries; fragment word [kk][j] is columns 16 kk + 8 (j / 2) + pair of row
      // 8 (j % 2) + group. The eight rows of a matrix land in eight distinct chunks.
      unsigned char* const ds_tile = smem.ds(Tile::kColumnSplit ? consumer : ds_buffer);
      if constexpr (!Tile::kConsumersComputeDq) mbarrier_wait(smem.ds_empty(ds_buffer), ds_parity ^ 1u);
      {
        // Matrix j of k-step kk (rows 8 (j % 2) on, columns 16 kk + 8 (j / 2) on) is one
        // 16-byte chunk in each of its 8 rows; this lane addresses row lane % 8 of matrix
        // lane / 8.
        const int matrix = lane / 8, row = key_row0 + 8 * (matrix % 2) + lane % 8;
        const std::uint32_t row_address = ptx::smem_address(ds_tile) + row * 128;
#pragma unroll
        for (int kk = 0; kk < kBlockM / 16; ++kk)
          stmatrix_x4(row_address + (((2 * kk + matrix / 2) ^ (lane % 8)) * 16), ds_frag[kk]);
      }
      fence_async_shared();
      if constexpr (Tile::kColumnSplit) {
        // This warpgroup's dQ columns over the block's 64 keys, from its own copy of dS^T
        // once its four warps have written it (named barrier 1 + consumer), in two
        // products: the second runs while the first's atomics drain.
        named_barrier_sync(1 + consumer, 128);
        constexpr int kWarpFloats = Tile::kDqCols / 8 * 32 * 4;
        float* const dq_block = dq_accumulator_block<Tile>(p, w, block) + warp * kWarpFloats + 4 * lane;
        const std::uint32_t ds_address = ptx::smem_address(ds_tile);
        const std::uint32_t k_tile = ptx::smem_address(smem.k());
        AccumulatorTile<1, Tile::kDqCols / 8> dq[Tile::kDqProducts];
        const auto add_dq = [&](int j) {
          float* const dst = dq_block + (col_base / Tile::kDqCols + j) * 64 * Tile::kDqCols;
#pragma unroll
          for (int i = 0; i < Tile::kDqCols / 8; ++i)
            atomicAdd(reinterpret_cast<float4*>(dst + i * 32 * 4),
                      make_float4(dq[j].value[0][i][0], dq[j].value[0][i][1], dq[j].value[0][i][2],
                                  dq[j].value[0][i][3]));
        };
        issue_dq_product<Tile, Element>(dq[0], ds_address, k_tile + (col_base / 64) * kBlockN * 128);
        wgmma_wait<1>();  // dV and dK have read this block's Q and dO: the slot is free
        pin_accumulators(dv);
        pin_accumulators(dk);
        mbarrier_arrive(smem.rows_empty(slot.stage));
        wgmma_wait<0>();
        pin_accumulators(dq[0]);
#pragma unroll
        for (int j = 1; j < Tile::kDqProducts; ++j) {
          issue_dq_product<Tile, Element>(dq[j], ds_address, k_tile + (col_base / 64 + j) * kBlockN * 128);
          add_dq(j - 1);
          wgmma_wait<0>();
          pin_accumulators(dq[j]);
        }
        add_dq(Tile::kDqProducts - 1);
      } else if constexpr (Tile::kConsumersComputeDq) {
        // This warpgroup's dQ columns (atom `consumer` of K) over all 128 keys, once the
        // other warpgroup's dS^T rows are written too (named barrier 1, both warpgroups).
        named_barrier_sync(1, 256);
        AccumulatorTile<1, Tile::kDqCols / 8> dq;
        issue_dq_product<Tile, Element>(dq, ptx::smem_address(ds_tile),
                                        ptx::smem_address(smem.k()) + consumer * kBlockN * 128);
        // dQ reads dS^T and K only: the Q/dO slot frees once dV and dK have read it.
        wgmma_wait<1>();
        pin_accumulators(dv);
        pin_accumulators(dk);
        mbarrier_arrive(smem.rows_empty(slot.stage));
        wgmma_wait<0>();
        pin_accumulators(dq);
        constexpr int kWarpFloats = Tile::kDqCols / 8 * 32 * 4;
        reduce_dq_rows<Tile::kDqCols, 0>(
            dq, smem.dq_stage(consumer) + warp * kWarpFloats,
            dq_accumulator_block<Tile>(p, w, block) + consumer * 64 * Tile::kDqCols + warp * kWarpFloats);
      } else {
        release(smem.ds_full(consumer, ds_buffer));
        wgmma_wait<0>();  // dV and dK have read this block's Q and dO
        pin_accumulators(dv);
        pin_accumulators(dk);
        mbarrier_arrive(smem.rows_empty(slot.stage));
      }
    }
    if constexpr (Tile::kConsumersComputeDq && !Tile::kColumnSplit)
      if (lane == 0) bulk_wait_read<0>();  // as in warpgroup 0: only the staging must be read before exit
  }

  if constexpr (kTailPiece)
    if (!gather_piece_sums<Tile>(tail, dk, dv)) return;

  // dK = scale * sum dS^T Q and dV = sum P^T dO leave through shared memory: each warp
  // stages its 16 key rows, then writes them back as 16-byte row chunks that fill whole
  // sectors (4-byte stores straight from the fragments took 2.5-3 us per block on H100,
  // a tenth of a 1k-token block). The staging space, V and the Q/dO ring, is free once
  // both consumers' last products have read it (named barrier kEpilogueBarrier); warpgroup
  // 0's last dQ product reads only K and dS^T. Key rows past the sequence and head-dim
  // columns past head_dim (zero-filled by TMA) are not written.
  named_barrier_sync(kEpilogueBarrier, 128 * Tile::kConsumerWarpgroups);
  constexpr int kRows = 16, kChunks = Tile::kOwnCols / 8;
  constexpr int kPitch = Tile::kOwnCols * 2 + 16;  // the padding keeps the fragment stores conflict-free
  static_assert(Tile::kConsumerWarps * 2 * kRows * kPitch <= Tile::kKVBytes + 2 * Tile::kStages * Tile::kRowBytes,
                "the dK/dV staging must fit in V and the Q/dO ring");
  unsigned char* const dk_stage = smem.v() + (4 * consumer + warp) * 2 * kRows * kPitch;
  unsigned char* const dv_stage = dk_stage + kRows * kPitch;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int offset = (8 * h + lane_group()) * kPitch + 2 * pair;
#pragma unroll
    for (int ni = 0; ni < Tile::kOwnCols / 8; ++ni) {
      *reinterpret_cast<std::uint32_t*>(dk_stage + offset + 16 * ni) =
          ptx::pack2<Element>(dk.value[0][ni][2 * h] * a.scale, dk.value[0][ni][2 * h + 1] * a.scale);
      *reinterpret_cast<std::uint32_t*>(dv_stage + offset + 16 * ni) =
          ptx::pack2<Element>(dv.value[0][ni][2 * h], dv.value[0][ni][2 * h + 1]);
    }
  }
  __syncwarp();
  Element* const dk_base = row_pointer<Element>(p.dk, w.batch, w.seq.k_begin, w.kv_head);
  Element* const dv_base = row_pointer<Element>(p.dv, w.batch, w.seq.k_begin, w.kv_head);
  static_assert(kRows * kChunks % 32 == 0, "whole chunks per lane");
#pragma unroll
  for (int j = 0; j < kRows * kChunks / 32; ++j) {
    const int row = (lane + 32 * j) / kChunks, chunk = (lane + 32 * j) % kChunks;
    const std::int64_t key = w.key_begin + key_row0 + row;
    const int col = col_base + 8 * chunk;
    if (key >= w.seq.seq_k || col >= a.head_dim) continue;
    *reinterpret_cast<uint4*>(dk_base + key * p.dk.row_stride + col) =
        *reinterpret_cast<const uint4*>(dk_stage + row * kPitch + 16 * chunk);
    *reinterpret_cast<uint4*>(dv_base + key * p.dv.row_stride + col) =
        *reinterpret_cast<const uint4*>(dv_stage + row * kPitch + 16 * chunk);
  }
}

// One key block, or one piece of a cut one (kTailPiece): the loads and dQ in warpgroup 0,
// dK and dV in the consumers.
template <class Tile, class Element, bool kTailPiece>
__device__ __forceinline__ void run_key_block(const BackwardTensorMaps& maps, const sm80::BackwardKernelParams& p,
                                              const BackwardTailPieces& tail, const KeyBlockWork& work) {
  if (work.key_begin >= work.seq.seq_k) return;

  extern __shared__ unsigned char shared_bytes[];
  const std::uint32_t misalignment = ptx::smem_address(shared_bytes) % kSwizzleGroupBytes;
  const BackwardSharedMemory<Tile> smem{shared_bytes + (misalignment == 0 ? 0 : kSwizzleGroupBytes - misalignment)};

  const int warpgroup = static_cast<int>(threadIdx.x / 128);
  if (threadIdx.x == 0) {
    mbarrier_init(smem.kv_full(), 2);  // K and V, one expect-bytes arrival each
    for (int s = 0; s < Tile::kStages; ++s) {
      mbarrier_init(smem.rows_full(s), 2 + 32);  // Q and dO, then the 32 lanes' statistics
      // Every consumer thread arrives: its reads of the slot's statistics (plain loads)
      // happen before the producer's next stores there.
      mbarrier_init(smem.rows_empty(s), 128 * Tile::kConsumerWarpgroups);
    }
    for (int b = 0; b < Tile::kDsBuffers; ++b) {
      for (int c = 0; c < Tile::kConsumerWarpgroups; ++c) mbarrier_init(smem.ds_full(c, b), 4);
      mbarrier_init(smem.ds_empty(b), 4);
    }
    fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {
    release_registers<Tile::kLeaderRegisters>();
    if (work.iterations > 0) load_and_reduce_dq<Tile, Element>(maps, p, smem, work);
  } else {
    claim_registers<Tile::kConsumerRegisters>();
    // Above d = 64 the index is broadcast from lane 0, so ptxas knows it is warp-uniform
    // (as in the forward): +1.2 to +2.4 % at d = 128 and 256; at d = 64 +2 to +3 % causal
    // but -1.2 to -1.8 % non-causal (H200 A/B, perf-notes-hopper.md backward v14).
    const int consumer = Tile::kHeadDim > 64 ? __shfl_sync(0xffffffffu, warpgroup - 1, 0) : warpgroup - 1;
    consume_query_blocks<Tile, Element, kTailPiece>(p, smem, work, tail, consumer);
  }
}

// The main grid: one block per (128 keys, kv head, sequence), key blocks fastest (or kv
// heads, key_blocks_heads_fastest); the blocks of cut key blocks exit at once. The pieces'
// grid (kTailPieces): one block per piece, launched behind the main grid with
// programmatic stream serialization, so its blocks take the SMs the main grid's last
// round leaves idle.
template <class Tile, class Element, bool kTailPieces>
__global__ void __launch_bounds__(Tile::kThreads, 1)
    backward_kernel(const __grid_constant__ BackwardTensorMaps maps, const sm80::BackwardKernelParams p,
                    const BackwardTailPieces tail) {
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN;
  if constexpr (kTailPieces) {
    KeyBlockWork work = key_block_work<kBlockM, kBlockN>(
        p.attn, cut_block_coordinates(p.attn, tail.plan, (p.attn.seq_k + kBlockN - 1) / kBlockN));
    restrict_to_piece(work, static_cast<int>(blockIdx.x) % tail.plan.pieces, tail.plan.pieces);
    run_key_block<Tile, Element, true>(maps, p, tail, work);
    // Stream order puts the dQ conversion after this grid only: this grid must not
    // complete before the main grid, whose dQ additions the conversion reads too.
    wait_for_prerequisite_grids();
  } else {
    launch_dependent_grids();
    if (main_grid_launch_index() >= tail.plan.first_block) return;
    run_key_block<Tile, Element, false>(maps, p, tail,
                                        key_block_work<kBlockM, kBlockN>(p.attn, main_grid_coordinates<kBlockN>(p.attn)));
  }
}

// dQ = scale * accumulator, in the output dtype: one block per (query block, head,
// sequence). An item is 8 columns of rows r and r + 8 of a 16-row group: in the
// accumulator's register order (bwd_launch.h) those are the 64 contiguous bytes of lanes
// 4 (r % 8) .. 4 (r % 8) + 3 of one column group (sm80::convert_accumulator_rows), so a warp
// reads 2 KiB in one piece and writes each row's 16 bytes in one store (the stores were 4
// bytes apiece before: 90 us at d = 64, 16k rows x 32 heads on H100; cuDNN's conversion
// takes 74).
template <class Tile, class Element>
__global__ void backward_dq_convert_kernel(const sm80::BackwardKernelParams p) {
  constexpr int kBlockM = Tile::kBlockM, kDqCols = Tile::kDqCols;
  constexpr int kColumnGroups = Tile::kHeadDim / 8;
  const sm80::AttentionArgs& a = p.attn;
  const int m0 = static_cast<int>(blockIdx.x) * kBlockM;
  const int head = static_cast<int>(blockIdx.y), batch = static_cast<int>(blockIdx.z);
  const SequenceSlice seq = sequence_slice(a, batch);
  if (m0 >= seq.seq_q) return;
  const float* const block = dq_accumulator_block<Tile>(p, head, packed_q_begin(a, seq, batch), batch, m0);
  const int rows_valid = seq.seq_q - m0;
  for (int item = static_cast<int>(threadIdx.x); item < kBlockM / 2 * kColumnGroups; item += blockDim.x) {
    const int g = item % 8, group = item / 8 % kColumnGroups, row_group = item / (8 * kColumnGroups);
    const int region = group / (kDqCols / 8), group_in_region = group % (kDqCols / 8);
    if (8 * group >= a.head_dim) continue;
    const int row = 16 * row_group + g;
    Element* const dst = row_pointer<Element>(p.dq, batch, seq.q_begin + m0 + row, head) + 8 * group;
    sm80::convert_accumulator_rows<Element>(
        reinterpret_cast<const float4*>(block + region * kBlockM * kDqCols + row_group * 16 * kDqCols +
                                        group_in_region * 128 + 16 * g),
        a.scale, row < rows_valid ? dst : nullptr, row + 8 < rows_valid ? dst + 8 * p.dq.row_stride : nullptr);
  }
}

template <int kHeadDimTile, class Element>
void launch_backward(const TensorMapGeometry& geometry, const sm80::BackwardKernelParams& call,
                     cudaStream_t stream) {
  using Tile = BackwardTile<kHeadDimTile>;
  sm80::BackwardKernelParams p = call;
  const sm80::AttentionArgs& a = p.attn;

  // Without a band or varlen every key block walks the same query blocks, and the last
  // round of the launch may be cut into pieces (tail_split.h).
  const std::int64_t key_blocks = (a.seq_k + Tile::kBlockN - 1) / Tile::kBlockN;
  const bool equal_blocks =
      a.window_left < 0 && a.window_right < 0 && a.cu_seqlens_q == nullptr && a.cu_seqlens_k == nullptr;
  BackwardTailPieces tail;
  tail.plan.first_block = key_blocks * a.heads_kv * a.batch;
  if (equal_blocks)
    tail.plan = plan_tail_split(tail.plan.first_block,
                                static_cast<int>(a.heads_q / a.heads_kv * ((a.seq_q + Tile::kBlockM - 1) / Tile::kBlockM)),
                                geometry.multiprocessors);

  // One allocation: D, then what the kernel that computes D clears: the dQ accumulator and,
  // for cut key blocks, their partial sums and arrival counts.
  constexpr std::int64_t kAlign = 256;
  const auto aligned = [](std::int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; };
  const std::int64_t dot_bytes = aligned(p.rows_q * a.heads_q * 4);
  const std::int64_t accum_bytes = aligned(a.heads_q * dq_accum_rows_per_head(p.rows_q, a.batch) * kHeadDimTile * 4);
  const std::int64_t sums_bytes = aligned(tail.plan.blocks * Tile::kPieceSumFloats * 4);
  const std::int64_t arrivals_bytes = aligned(tail.plan.blocks * 4);
  StreamWorkspace workspace(dot_bytes + accum_bytes + sums_bytes + arrivals_bytes + kAlign, stream,
                            "backward workspace allocation");
  p.dout_dot_out = reinterpret_cast<float*>(workspace.data());
  p.dq_accum = reinterpret_cast<float*>(workspace.data() + dot_bytes);
  tail.partials = reinterpret_cast<float*>(workspace.data() + dot_bytes + accum_bytes);
  tail.arrivals = reinterpret_cast<unsigned*>(workspace.data() + dot_bytes + accum_bytes + sums_bytes);
  sm80::launch_backward_dot<Element>(p, p.dq_accum, accum_bytes + sums_bytes + arrivals_bytes, stream);

  if (key_blocks > 0 && a.batch > 0) {
    BackwardTensorMaps maps;
    maps.q = make_tensor_map(a.q, geometry, geometry.rows_q, geometry.heads_q, Tile::kBlockM);
    maps.dout = make_tensor_map(p.dout, geometry, geometry.rows_q, geometry.heads_q, Tile::kBlockM);
    maps.k = make_tensor_map(a.k, geometry, geometry.rows_k, geometry.heads_kv, Tile::kBlockN);
    maps.v = make_tensor_map(a.v, geometry, geometry.rows_k, geometry.heads_kv, Tile::kBlockN);
    const auto kernel = backward_kernel<Tile, Element, false>;
    sm80::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSharedBytes),
                     "setting the sm90 backward kernel's shared-memory size");
    const dim3 grid = key_blocks_heads_fastest(a, Tile::kBlockN)
                          ? dim3(static_cast<unsigned>(a.heads_kv), static_cast<unsigned>(key_blocks),
                                 static_cast<unsigned>(a.batch))
                          : dim3(static_cast<unsigned>(key_blocks), static_cast<unsigned>(a.heads_kv),
                                 static_cast<unsigned>(a.batch));
    kernel<<<grid, Tile::kThreads, Tile::kSharedBytes, stream>>>(maps, p, tail);
    sm80::check_cuda(cudaGetLastError(), "launching the sm90 backward kernel");

    if (tail.plan.active()) {
      const auto pieces_kernel = backward_kernel<Tile, Element, true>;
      sm80::check_cuda(
          cudaFuncSetAttribute(pieces_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSharedBytes),
          "setting the sm90 backward pieces kernel's shared-memory size");
      cudaLaunchAttribute early_start;
      early_start.id = cudaLaunchAttributeProgrammaticStreamSerialization;
      early_start.val.programmaticStreamSerializationAllowed = 1;
      cudaLaunchConfig_t config = {};
      config.gridDim = dim3(static_cast<unsigned>(tail.plan.blocks * tail.plan.pieces));
      config.blockDim = dim3(Tile::kThreads);
      config.dynamicSmemBytes = Tile::kSharedBytes;
      config.stream = stream;
      config.attrs = &early_start;
      config.numAttrs = 1;
      sm80::check_cuda(cudaLaunchKernelEx(&config, pieces_kernel, maps, p, tail),
                       "launching the sm90 backward pieces kernel");
    }
  }

  const std::int64_t m_blocks = (a.seq_q + Tile::kBlockM - 1) / Tile::kBlockM;
  if (m_blocks > 0 && a.batch > 0 && a.heads_q > 0) {
    backward_dq_convert_kernel<Tile, Element>
        <<<dim3(static_cast<unsigned>(m_blocks), static_cast<unsigned>(a.heads_q), static_cast<unsigned>(a.batch)),
           256, 0, stream>>>(p);
    sm80::check_cuda(cudaGetLastError(), "sm90 backward dq conversion launch");
  }

  constexpr int kElementwiseThreads = 256;
  const std::int64_t key_chunks = p.rows_k * a.heads_kv * (a.head_dim / 8);
  if (a.cu_seqlens_k != nullptr && key_chunks > 0) {
    sm80::backward_zero_unused_keys_kernel<Element>
        <<<sm80::blocks_for(key_chunks, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(p);
    sm80::check_cuda(cudaGetLastError(), "sm90 backward unused key rows launch");
  }
}

}  // namespace tileflash::cuda::sm90
