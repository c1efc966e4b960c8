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

// A block owns kBlockN = 128 keys of one (kv head, sequence), 64 per consumer warpgroup,
// and walks the query blocks of kBlockM = 64 rows that reach them. Per block each
// warpgroup holds dK and dV of its keys (64 x head dim, fp32) in registers throughout, and
// per query block S^T, dP^T (64 x 64) and its dQ share.
//
// dQ = dS K adds 128 keys into 64 query rows. With a head-dim tile of 128 each warpgroup
// takes half the columns over all 128 keys (whole 64-column atoms of K, reading the other
// warpgroup's dS^T: double-buffered so a fast warpgroup cannot overwrite the one the
// other still reads); narrower tiles cannot split into whole atoms, so each warpgroup
// adds its own 64 keys over all columns and both partial sums go to memory.
template <int kHeadDimTile>
struct BackwardTile {
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = 128;
  static constexpr int kStages = 2;
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kConsumerWarps = 4 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 * (kConsumerWarpgroups + 1);
  static constexpr int kAtoms = (kHeadDim + 63) / 64;
  static constexpr bool kSplitDqColumns = kHeadDim % 128 == 0;
  static constexpr int kDqCols = kSplitDqColumns ? kHeadDim / 2 : kHeadDim;  // one warpgroup's dQ share
  static constexpr int kDsBuffers = kSplitDqColumns ? 2 : 1;
  static constexpr int kKVBytes = kBlockN * kAtoms * 128;
  static constexpr int kRowBytes = kBlockM * kAtoms * 128;  // one Q or dO tile
  static constexpr int kDsBytes = kBlockN * 128;             // dS^T: per key, 64 queries in 128 bytes
  static constexpr int kDqStageBytes = 64 * kDqCols * 4;     // one warpgroup's fp32 dQ share
  static constexpr int kStatsBytes = 2 * kBlockM * 4;        // lse and D = rowsum(dO * O) of a query block
  static constexpr int kBarriers = 1 + 2 * kStages;
  static constexpr int kSharedBytes = 1024 + 2 * kKVBytes + 2 * kStages * kRowBytes + kDsBuffers * kDsBytes +
                                      kConsumerWarpgroups * kDqStageBytes + kStages * kStatsBytes + 8 * kBarriers;
  // setmaxnreg: the launch gives 168 per thread (384 threads, one block per SM); the
  // producer returns what the consumers, holding dK, dV, S^T, dP^T and dQ, take.
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;

  static_assert(kHeadDim == 64 || kHeadDim == 96 || kHeadDim == 128, "sm90 backward tiles: 64, 96, 128");
  static_assert(kSharedBytes <= 227 * 1024, "sm90 backward tile exceeds the shared memory of a block");
  static_assert(kProducerRegisters * 128 + kConsumerRegisters * 128 * kConsumerWarpgroups == 168 * kThreads,
                "register reallocation must redistribute exactly the launch's registers");
};

constexpr bool backward_supports_tile(int head_dim_tile) {
  return head_dim_tile == 64 || head_dim_tile == 96 || head_dim_tile == 128;
}

// The fp32 dQ accumulator: per query head, blocks of 64 rows x head-dim tile, one per
// (sequence, query block). The block of sequence b's query block m starts at row
// packed_begin(b) + 64 b + 64 m, so blocks never overlap and a block of a sequence's
// last rows stays inside its own space. Inside a block the floats are in the order the
// warpgroups' registers hold them (dq_block_index), so the kernel stages a block with
// 16-byte conflict-free stores and adds it with one bulk reduction.
TF_HOST_DEVICE std::int64_t dq_accum_rows_per_head(std::int64_t rows_q, std::int64_t batch) {
  return rows_q + 64 * (batch + 1);
}

// Where (row, col) of a 64-row dQ block sits: region col / kDqCols (one warpgroup's
// columns), then warp row / 16, column group col / 8, lane 4 * (row % 8) + (col % 8) / 2,
// and the accumulator element 2 * ((row % 16) / 8) + col % 2 (fragment.cuh's layout).
template <int kDqCols>
TF_HOST_DEVICE int dq_block_index(int row, int col) {
  const int region = col / kDqCols, c = col % kDqCols;
  const int lane = 4 * (row % 8) + (c % 8) / 2;
  const int element = 2 * ((row % 16) / 8) + c % 2;
  return region * 64 * kDqCols + (((row / 16) * (kDqCols / 8) + c / 8) * 32 + lane) * 4 + element;
}

template <int kHeadDimTile, class Element>
void launch_backward(const TensorMapGeometry& geometry, const sm80::BackwardKernelParams& params,
                     cudaStream_t stream);

}  // namespace tileflash::cuda::sm90
