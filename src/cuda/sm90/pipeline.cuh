// Pieces of the TMA pipelines shared by the Hopper forward and backward kernels: ring
// slots with their mbarrier phases, and one tile load as 64-column swizzle atoms.
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

// Loads one (rows x kHeadDim) tile as kAtoms boxes of 64 columns, all completing on `full`
// (a box counts all its bytes, the zero-filled ones too).
template <class Tile, int kRows>
__device__ __forceinline__ void load_tile(unsigned char* smem, const CUtensorMap* map, std::uint64_t* full, int row,
                                          int head, int batch) {
  mbarrier_arrive_expect_bytes(full, kRows * Tile::kAtoms * 128);
#pragma unroll
  for (int atom = 0; atom < Tile::kAtoms; ++atom)
    tma_load_4d(smem + atom * kRows * 128, map, full, 64 * atom, row, head, batch);
}

}  // namespace tileflash::cuda::sm90
