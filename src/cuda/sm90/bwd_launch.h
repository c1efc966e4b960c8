// Tile shapes of the Hopper backward kernel and the layout of its dQ accumulator.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/host_device.h"
#include "cuda/common/tail_split.h"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm90/fwd_launch.h"

namespace tileflash::cuda::sm90 {

// Q, K, V and dO as TMA tensor maps (the forward's geometry: 64-column boxes, 128-byte swizzle).
struct BackwardTensorMaps {
  CUtensorMap q, k, v, dout;
};

// A block owns kBlockN keys of one (kv head, sequence) and walks the query blocks of
// kBlockM = 64 rows that reach them, with two consumer warpgroups that hold their dK and
// dV (fp32) in registers throughout. Per query block they compute S^T, dP^T (keys x 64
// queries), P^T and dS^T, add into dK and dV, and write dS^T to shared memory for
// dQ = dS K. Warp 0 of warpgroup 0 issues the loads.
//
// Up to head dim 128 the block has 128 keys and each consumer owns 64 of them (dK and dV:
// 64 x head dim); dS^T is double-buffered (block i + 1's is written while block i's is
// still read). Who computes dQ (measured on H200, docs/perf-notes-hopper.md): up to head
// dim 96, warpgroup 0 does, so the consumers go on to the next query block while the
// tensor cores still run this block's dQ. At 128, dK and dV leave too few registers for
// that (warpgroup 0 would hold dQ in two 64-column pieces and fall behind), so each
// consumer computes the dQ columns of one 64-column atom of K, reading both warpgroups'
// dS^T.
//
// At head dim 256 (kColumnSplit) dK and dV of 64 keys would take 256 registers per thread,
// so the block has 64 keys and the consumers split the head dim instead: each holds dK and
// dV of all 64 keys for its 128 columns and computes S^T and dP^T of all of them itself
// (two of the five products twice: 1.4x the tensor work, no exchange between the
// warpgroups). Each writes its own copy of dS^T and computes the dQ of its columns in two
// 64-column products, added by 16-byte atomics from registers (the shared memory left
// after two Q/dO slots holds no staging).
template <int kHeadDimTile>
struct BackwardTile {
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr bool kColumnSplit = kHeadDim > 128;
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = kColumnSplit ? 64 : 128;
  static constexpr int kStages = kHeadDim <= 64 ? 3 : 2;  // as many Q/dO slots as fit
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kConsumerWarps = 4 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 * (kConsumerWarpgroups + 1);
  static constexpr int kAtomColumns = 64;  // columns of a 128-byte swizzle row
  static constexpr int kAtoms = (kHeadDim + kAtomColumns - 1) / kAtomColumns;
  static constexpr int kOwnCols = kColumnSplit ? kHeadDim / 2 : kHeadDim;  // dK, dV columns of a consumer
  static constexpr bool kConsumersComputeDq = kHeadDim >= 128;
  static constexpr int kDqCols = kConsumersComputeDq ? 64 : kHeadDim;  // columns of one dQ product
  static constexpr int kDqProducts = kColumnSplit ? kOwnCols / kDqCols : 1;  // per consumer computing dQ, per block
  static constexpr int kDsBuffers = 2;  // double buffer, or one per consumer (kColumnSplit)
  static constexpr int kDqStages = kColumnSplit ? 0 : 2;  // per consumer, or alternating in warpgroup 0
  static constexpr int kKVBytes = kBlockN * kAtoms * 128;
  static constexpr int kRowBytes = kBlockM * kAtoms * 128;  // one Q or dO tile
  static constexpr int kDsBytes = kBlockN * 128;             // dS^T: per key, 64 queries in 128 bytes
  static constexpr int kDqStageBytes = 64 * kDqCols * 4;     // one fp32 dQ product
  static constexpr int kStatsBytes = 2 * kBlockM * 4;        // lse and D = rowsum(dO * O) of a query block
  // dK and dV of a cut key block's pieces (fp32): a block's keys times the head dim, twice.
  static constexpr int kPieceSumFloats = 2 * kBlockN * kHeadDim;
  static constexpr int kBarriers = 1 + 2 * kStages + (kConsumerWarpgroups + 1) * kDsBuffers;
  static constexpr int kSharedBytes = 1024 + 2 * kKVBytes + 2 * kStages * kRowBytes + kDsBuffers * kDsBytes +
                                      kDqStages * kDqStageBytes + kStages * kStatsBytes + 8 * kBarriers;
  // setmaxnreg: the launch gives 168 per thread (384 threads, one block per SM). The
  // consumers hold dK, dV (up to 2 x 64), S^T, dP^T (64), the P^T, dS^T operands (32) and,
  // from 128, their dQ columns (32); warpgroup 0 the loads' state and, below 128, dQ (32 or 48).
  // dS^T from the fp32 P^T still in registers (no unpacking of the rounded operand) where
  // its 32 registers fit beside dK and dV.
  static constexpr bool kDsFromFloatP = kHeadDim <= 64;
  static constexpr int kLeaderRegisters = kConsumersComputeDq ? 24 : 88;
  static constexpr int kConsumerRegisters = kConsumersComputeDq ? 240 : 208;

  static_assert(kHeadDim == 64 || kHeadDim == 96 || kHeadDim == 128 || kHeadDim == 256,
                "sm90 backward tiles: 64, 96, 128, 256");
  static_assert(kSharedBytes <= 227 * 1024, "sm90 backward tile exceeds the shared memory of a block");
  static_assert(kLeaderRegisters * 128 + kConsumerRegisters * 128 * kConsumerWarpgroups == 168 * kThreads,
                "register reallocation must redistribute exactly the launch's registers");
};

// The key blocks that run cut into query-range pieces (tail_split.h): the main grid's
// blocks from `plan.first_block` on (launch order) exit at once, and a second launch runs
// each of them as `plan.pieces` blocks. A piece adds its dK and dV (fp32, unscaled) to
// its block's slot of `partials`, in the consumers' register order, and counts itself in
// `arrivals`; the last to arrive reads the sums back and writes dK and dV. Both live in the
// workspace the rowsum kernel clears.
struct BackwardTailPieces {
  TailSplit plan;
  float* partials = nullptr;
  unsigned* arrivals = nullptr;
};

constexpr bool backward_supports_tile(int head_dim_tile) {
  return head_dim_tile == 64 || head_dim_tile == 96 || head_dim_tile == 128 || head_dim_tile == 256;
}

// The fp32 dQ accumulator: per query head, blocks of 64 rows x head-dim tile, one per
// (sequence, query block). The block of sequence b's query block m starts at row
// packed_begin(b) + 64 b + 64 m, so blocks never overlap and a block of a sequence's
// last rows stays inside its own space. Inside a block the floats are in the order the
// warpgroups' registers hold them, so each warp stages its rows with 16-byte
// conflict-free stores and adds them with one bulk reduction: (row, col) sits in region
// col / kDqCols (one dQ product), then row group row / 16, column group (col % kDqCols) / 8,
// lane 4 (row % 8) + (col % 8) / 2, element 2 ((row % 16) / 8) + col % 2 (fragment.cuh's
// accumulator layout), with 4 floats per lane, 32 lanes per column group.
TF_HOST_DEVICE std::int64_t dq_accum_rows_per_head(std::int64_t rows_q, std::int64_t batch) {
  return rows_q + 64 * (batch + 1);
}

template <int kHeadDimTile, class Element>
void launch_backward(const TensorMapGeometry& geometry, const sm80::BackwardKernelParams& params,
                     cudaStream_t stream);

}  // namespace tileflash::cuda::sm90
