// Tile shapes of the Ampere-class forward kernel, one constexpr choice per head-dim tile.
#pragma once

namespace tileflash::cuda::sm80 {

// Shared memory one block may opt into: 99 KiB on sm_86, sm_89 and sm_120 (the tile set
// that runs everywhere), 163 KiB on sm_80 and 227 KiB on sm_90. The large tile set is
// used where the device offers what a tile needs (launch_forward checks).
constexpr int kSharedMemoryBudget = 99 * 1024;
constexpr int kLargeSharedMemoryBudget = 227 * 1024;

struct ForwardTileShape {
  int block_m;  // query rows per block
  int block_n;  // key rows per main-loop step
  int warps;    // each warp owns block_m / warps query rows
  int min_blocks_per_sm;
  int kv_stages = 2;  // K/V buffers: 2 (the next key tile loads during this one) or 1 (see the kernel)

  constexpr bool operator==(const ForwardTileShape& o) const {
    return block_m == o.block_m && block_n == o.block_n && warps == o.warps &&
           min_blocks_per_sm == o.min_blocks_per_sm && kv_stages == o.kv_stages;
  }
};

// Each warp holds its rows' output (rows x head_dim fp32) and one score tile (rows x
// block_n fp32) in registers. 32 rows per warp up to head dim 128 let each K/V fragment
// read from shared memory feed two mma tiles (shared-memory bandwidth, not the tensor
// cores, bounds these kernels); above head dim 64 the base tiles narrow the score tile
// to 32 columns to fit two K/V stages in 99 KiB. Larger heads drop to 16 rows per warp
// (256 output registers would not fit); with the large shared memory (sm_90; sm_80 up
// to d = 192) they keep 128 rows per block, halving the K/V traffic per query row, and
// take 64 keys per step. At 256 that tile (202 KiB, one block per SM) waited on its
// loads; FA2's 64 x 64 tile with a single K and V buffer (99 KiB, two blocks per SM)
// measured +3 to +8 % on the H200, and -5 to -9 % at 192 (docs/perf-notes.md).
constexpr ForwardTileShape forward_tile_shape(int head_dim, bool large_shared_memory) {
  if (head_dim <= 64) return {128, 64, 4, 2};
  if (head_dim <= 128) return {128, large_shared_memory ? 64 : 32, 4, 1};
  if (large_shared_memory) return head_dim <= 192 ? ForwardTileShape{128, 64, 8, 1} : ForwardTileShape{64, 64, 4, 2, 1};
  return {64, 32, 4, 1};
}

// Whether a head-dim tile has a distinct large-shared-memory variant.
constexpr bool has_large_variant(int head_dim) {
  return !(forward_tile_shape(head_dim, true) == forward_tile_shape(head_dim, false));
}

template <int kHeadDimTile, bool kLargeSharedMemory>
struct ForwardTile {
  static constexpr ForwardTileShape kShape = forward_tile_shape(kHeadDimTile, kLargeSharedMemory);
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr int kBlockM = kShape.block_m;
  static constexpr int kBlockN = kShape.block_n;
  static constexpr int kWarps = kShape.warps;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kMinBlocksPerSm = kShape.min_blocks_per_sm;
  static constexpr int kKVStages = kShape.kv_stages;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static constexpr int kMTiles = kRowsPerWarp / 16;  // 16-row mma tiles per warp
  static constexpr int kNTiles = kBlockN / 8;        // 8-column mma tiles of a score tile
  static constexpr int kDTiles = kHeadDim / 8;       // 8-column mma tiles of the output
  // Q and the K and V stages, each padded by 8 elements per row (tile_io.cuh).
  static constexpr int kSharedBytes = (kBlockM + 2 * kKVStages * kBlockN) * (kHeadDim + 8) * 2;

  static_assert(kHeadDim % 16 == 0 && kHeadDim <= 256, "head-dim tiles are multiples of 16 up to 256");
  static_assert(kRowsPerWarp % 16 == 0, "a warp owns whole 16-row mma tiles");
  static_assert(kBlockN % 16 == 0, "P feeds the PV product in 16-column steps");
  static_assert(kSharedBytes <= (kLargeSharedMemory ? kLargeSharedMemoryBudget : kSharedMemoryBudget),
                "forward tile exceeds its shared-memory budget");
};

}  // namespace tileflash::cuda::sm80
