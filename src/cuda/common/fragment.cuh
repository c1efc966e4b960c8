// Register tiles of one warp built from mma.sync m16n8k16 accumulators, and where each
// lane's values sit in the tile. Shared by the forward and backward kernels.
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"

namespace tileflash::cuda {

// A warp's (16 * kMTiles) x (8 * kNTiles) fp32 accumulator. Lane l = 4 * g + t holds, for
// each 16x8 tile, rows g and g + 8 and columns 2t, 2t + 1: value e sits at
// row 8 * (e / 2) + g, column 2 * t + e % 2 (PTX ISA, "mma.m16n8k16 fragment layout").
template <int kMTiles, int kNTiles>
struct AccumulatorTile {
  static constexpr int kRows = 16 * kMTiles;
  static constexpr int kCols = 8 * kNTiles;
  float value[kMTiles][kNTiles][4];

  __device__ __forceinline__ void fill(float x) {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e) value[mi][ni][e] = x;
  }
};

// Row and column, within the warp's tile, of accumulator value (mi, ni, e) of this lane.
__device__ __forceinline__ int lane_group() { return static_cast<int>(threadIdx.x % 32) / 4; }
__device__ __forceinline__ int lane_in_group() { return static_cast<int>(threadIdx.x % 32) % 4; }
__device__ __forceinline__ int accumulator_row(int mi, int e) { return 16 * mi + 8 * (e / 2) + lane_group(); }
__device__ __forceinline__ int accumulator_col(int ni, int e) { return 8 * ni + 2 * lane_in_group() + e % 2; }

// The accumulator's 16x16 block (mi, columns 16 * kk .. 16 * kk + 15) as the A operand of
// the next mma: the C layout of two neighbouring n-tiles is exactly the A layout, so P
// never leaves registers between S = QK^T and O += PV.
template <class Element, int kMTiles, int kNTiles>
__device__ __forceinline__ void accumulator_as_a(const AccumulatorTile<kMTiles, kNTiles>& acc, int mi, int kk,
                                                 std::uint32_t (&a)[4]) {
  a[0] = ptx::pack2<Element>(acc.value[mi][2 * kk][0], acc.value[mi][2 * kk][1]);
  a[1] = ptx::pack2<Element>(acc.value[mi][2 * kk][2], acc.value[mi][2 * kk][3]);
  a[2] = ptx::pack2<Element>(acc.value[mi][2 * kk + 1][0], acc.value[mi][2 * kk + 1][1]);
  a[3] = ptx::pack2<Element>(acc.value[mi][2 * kk + 1][2], acc.value[mi][2 * kk + 1][3]);
}

// acc's n-tiles 2 * pair and 2 * pair + 1 of every 16-row tile mi += a[mi] times the two
// n-tiles of b (the B operands of one ldmatrix.x4).
template <class Element, int kMTiles, int kNTiles>
__device__ __forceinline__ void mma_n_tile_pair(AccumulatorTile<kMTiles, kNTiles>& acc, int pair,
                                                const std::uint32_t (&a)[kMTiles][4], const std::uint32_t (&b)[2][2]) {
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi) {
    ptx::mma_16x8x16<Element>(acc.value[mi][2 * pair], a[mi], b[0]);
    ptx::mma_16x8x16<Element>(acc.value[mi][2 * pair + 1], a[mi], b[1]);
  }
}

// Pairwise reduction of get(kBegin) .. get(kEnd - 1) (one lane's values of a row): a
// chain of log2(n) dependent operations instead of n.
template <int kBegin, int kEnd, class Op, class Get>
__device__ __forceinline__ float tree_reduce(Op op, Get get) {
  if constexpr (kEnd - kBegin == 1) {
    return get(kBegin);
  } else {
    constexpr int kMid = kBegin + (kEnd - kBegin) / 2;
    return op(tree_reduce<kBegin, kMid>(op, get), tree_reduce<kMid, kEnd>(op, get));
  }
}

// Reductions over the four lanes that share a row of the accumulator.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 1);
  return x + __shfl_xor_sync(0xFFFFFFFFu, x, 2);
}

}  // namespace tileflash::cuda
