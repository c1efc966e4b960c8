// Pieces of the TMA pipelines shared by the Hopper forward and backward kernels: ring
// slots with their mbarrier phases, and one tile load as 128-byte swizzle atoms.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "cuda/sm90/hopper.cuh"

namespace tileflash::cuda::sm90 {

// The i-th tile a producer fills (and its consumers read) sits in ring slot i % kStages;
// the slot's barriers are on their (i / kStages)-th phase.
template <int kStages>
struct RingPosition {
  int stage = 0;
  std::uint32_t parity = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      parity ^= 1u;
    }
  }
};

// Loads one (rows x kHeadDim) tile as kAtoms boxes of 128 bytes (64 columns, 128 in FP8),
// all completing on `full` (a box counts all its bytes, the zero-filled ones too).
template <class Tile, int kRows>
__device__ __forceinline__ void load_tile(unsigned char* smem, const CUtensorMap* map, std::uint64_t* full, int row,
                                          int head, int batch) {
  mbarrier_arrive_expect_bytes(full, kRows * Tile::kAtoms * 128);
#pragma unroll
  for (int atom = 0; atom < Tile::kAtoms; ++atom)
    tma_load_4d(smem + atom * kRows * 128, map, full, Tile::kAtomColumns * atom, row, head, batch);
}

// Loads the V^T tile of kBlockN keys from `key` (fp8_values.h): kHeadDim rows per box of
// 128 keys, boxes one after the other.
template <class Tile>
__device__ __forceinline__ void load_transposed_values(unsigned char* smem, const CUtensorMap* map,
                                                       std::uint64_t* full, int key, int head, int batch) {
  static_assert(Tile::kBlockN % 128 == 0, "V^T boxes span 128 keys");
  mbarrier_arrive_expect_bytes(full, Tile::kHeadDim * Tile::kBlockN);
#pragma unroll
  for (int box = 0; box < Tile::kBlockN / 128; ++box)
    tma_load_4d(smem + box * Tile::kHeadDim * 128, map, full, key + 128 * box, 0, head, batch);
}

}  // namespace tileflash::cuda::sm90
