// Tile shapes of the Ampere-class forward kernel, one constexpr choice per head-dim tile.
#pragma once

namespace tileflash::cuda::sm80 {

// The smallest shared-memory capacity per block among the targets (sm_86, sm_89 and
// sm_120 offer 99 KiB; sm_80 and sm_90 more), so one tile set runs everywhere.
constexpr int kSharedMemoryBudget = 99 * 1024;

struct ForwardTileShape {
  int block_m;  // query rows per block
  int block_n;  // key rows per main-loop step
  int warps;    // each warp owns block_m / warps query rows
  int min_blocks_per_sm;
};

// Each warp holds its rows' output (rows x head_dim fp32) and one score tile (rows x
// block_n fp32) in registers: 32 rows per warp up to head dim 128 lets each K/V fragment
// read from shared memory feed two mma tiles; larger heads drop to 16 rows to stay
// within 255 registers.
constexpr ForwardTileShape forward_tile_shape(int head_dim) {
  if (head_dim <= 64) return {128, 64, 4, 2};
  if (head_dim <= 128) return {128, 64, 8, 1};
  return {64, 64, 4, 1};
}

template <int kHeadDimTile>
struct ForwardTile {
  static constexpr ForwardTileShape kShape = forward_tile_shape(kHeadDimTile);
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr int kBlockM = kShape.block_m;
  static constexpr int kBlockN = kShape.block_n;
  static constexpr int kWarps = kShape.warps;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kMinBlocksPerSm = kShape.min_blocks_per_sm;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static constexpr int kMTiles = kRowsPerWarp / 16;  // 16-row mma tiles per warp
  static constexpr int kNTiles = kBlockN / 8;        // 8-column mma tiles of a score tile
  static constexpr int kDTiles = kHeadDim / 8;       // 8-column mma tiles of the output
  // Q, one K tile and one V tile, each padded by 8 elements per row (tile_io.cuh).
  static constexpr int kSharedBytes = (kBlockM + 2 * kBlockN) * (kHeadDim + 8) * 2;

  static_assert(kHeadDim % 16 == 0 && kHeadDim <= 256, "head-dim tiles are multiples of 16 up to 256");
  static_assert(kRowsPerWarp % 16 == 0, "a warp owns whole 16-row mma tiles");
  static_assert(kBlockN % 16 == 0, "P feeds the PV product in 16-column steps");
  static_assert(kSharedBytes <= kSharedMemoryBudget, "forward tile exceeds the shared-memory budget of sm_86/89/120");
};

}  // namespace tileflash::cuda::sm80
