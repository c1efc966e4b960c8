// Tile shapes of the Hopper backward kernel and the layout of its dQ accumulator.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/host_device.h"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm90/fwd_launch.h"

namespace tileflash::cuda::sm90 {

// Q, K, V and dO as TMA tensor maps (the forward's geometry: 64-column boxes, 128-byte swizzle).
struct BackwardTensorMaps {
  CUtensorMap q, k, v, dout;
};

// A block owns kBlockN = 128 keys of one (kv head, sequence) and walks the query blocks of
// kBlockM = 64 rows that reach them. Two consumer warpgroups own 64 keys each and hold
// their dK and dV (64 x head dim, fp32) in registers throughout; per query block they
// compute S^T, dP^T (64 x 64), P^T and dS^T, add into dK and dV, and write dS^T to shared
// memory (double-buffered: block i + 1's is written while block i's is still read) for
// dQ = dS K over all 128 keys. Warp 0 of warpgroup 0 issues the loads.
//
// Who computes dQ (measured on H200, docs/perf-notes-hopper.md): up to head dim 96,
// warpgroup 0 does, so the consumers go on to the next query block while the tensor
// cores still run this block's dQ. At 128, dK and dV leave too few registers for that
// (warpgroup 0 would hold dQ in two 64-column pieces and fall behind), so each consumer
// computes the dQ columns of one 64-column atom of K, reading both warpgroups' dS^T.
template <int kHeadDimTile>
struct BackwardTile {
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = 128;
  static constexpr int kStages = kHeadDim <= 64 ? 3 : 2;  // as many Q/dO slots as fit
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kConsumerWarps = 4 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 * (kConsumerWarpgroups + 1);
  static constexpr int kAtoms = (kHeadDim + 63) / 64;
  static constexpr bool kConsumersComputeDq = kHeadDim == 128;
  static constexpr int kDqCols = kConsumersComputeDq ? kHeadDim / 2 : kHeadDim;  // columns of one dQ product
  static constexpr int kDsBuffers = 2;
  static constexpr int kDqStages = 2;  // per consumer, or alternating in warpgroup 0
  static constexpr int kKVBytes = kBlockN * kAtoms * 128;
  static constexpr int kRowBytes = kBlockM * kAtoms * 128;  // one Q or dO tile
  static constexpr int kDsBytes = kBlockN * 128;             // dS^T: per key, 64 queries in 128 bytes
  static constexpr int kDqStageBytes = 64 * kDqCols * 4;     // one fp32 dQ product
  static constexpr int kStatsBytes = 2 * kBlockM * 4;        // lse and D = rowsum(dO * O) of a query block
  static constexpr int kBarriers = 1 + 2 * kStages + (kConsumerWarpgroups + 1) * kDsBuffers;
  static constexpr int kSharedBytes = 1024 + 2 * kKVBytes + 2 * kStages * kRowBytes + kDsBuffers * kDsBytes +
                                      kDqStages * kDqStageBytes + kStages * kStatsBytes + 8 * kBarriers;
  // setmaxnreg: the launch gives 168 per thread (384 threads, one block per SM). The
  // consumers hold dK, dV (up to 2 x 64), S^T, dP^T (64), the P^T, dS^T operands (32) and,
  // at 128, their dQ columns (32); warpgroup 0 the loads' state and, below 128, dQ (32 or 48).
  static constexpr int kLeaderRegisters = kConsumersComputeDq ? 24 : 88;
  static constexpr int kConsumerRegisters = kConsumersComputeDq ? 240 : 208;

  static_assert(kHeadDim == 64 || kHeadDim == 96 || kHeadDim == 128, "sm90 backward tiles: 64, 96, 128");
  static_assert(kSharedBytes <= 227 * 1024, "sm90 backward tile exceeds the shared memory of a block");
  static_assert(kLeaderRegisters * 128 + kConsumerRegisters * 128 * kConsumerWarpgroups == 168 * kThreads,
                "register reallocation must redistribute exactly the launch's registers");
};

constexpr bool backward_supports_tile(int head_dim_tile) {
  return head_dim_tile == 64 || head_dim_tile == 96 || head_dim_tile == 128;
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
