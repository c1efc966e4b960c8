// Tile shapes of the Hopper forward kernel and the head-dim tiles compiled into this build.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda::sm90 {

// Q, K and V as TMA tensor maps over (head_dim, rows, heads, batch), boxes of 128 bytes
// (64 columns, 128 in FP8) with the 128-byte swizzle (FP8: V transposed, fp8_values.h); kernel parameters (__grid_constant__), so no copy to device
// memory is needed.
struct ForwardTensorMaps {
  CUtensorMap q, k, v;
};

// kRowBlock query rows per block, 64 per consumer warpgroup. Key tiles of 128 rows up to
// head dim 128 (S and O take 64 + 64 fp32 registers per thread), 80 above (O alone takes
// up to 128). As many K/V slots as fit next to Q in 227 KiB, at most 3. Head-dim tiles are
// multiples of 32 (wgmma N of the P V product); rows are stored as 64-column swizzle
// atoms, the last one partly zero-filled by TMA when the tile is not a multiple of 64.
// Up to head dim 64 a tall variant: 192 rows in three consumer warpgroups. Each K/V tile
// then feeds 1.5x the rows and a third warpgroup's softmax fills the tensor cores' gaps
// (+11 % at 8k, +19 % at 16k with 96-key tiles; -12 % at 1k, where 192-row blocks leave
// more partial tiles and fewer blocks), so launch_forward takes it from
// tall_tile_min_rows query rows. Its key tiles are 128 wide: 24 producer registers leave
// each consumer 160 (512 threads), in which ptxas spills 13 scalar words (52 bytes), not S
// or P; that beat 96-key tiles without spills by 2-8 % (2k-16k): 2048 and 4096 keys are
// 21.3 and 42.7 tiles of 96, and each trip's fixed costs are spread over more keys.
// kDynamicOrder (the tall tile under a band): see consume_tiles and launch_forward_tile.
//
// kFp8Inputs: Q, K and V in FP8 (e4m3), one byte per element, so a 128-byte swizzle atom
// holds 128 columns and a wgmma k-step 32 of them. The P V product then needs V with the
// keys contiguous (FP8 wgmma reads B K-major only): V arrives transposed, one atom of 128
// keys by kHeadDim rows per slot (fp8_values.h), so key tiles are 128 wide at every head
// dim (S takes 64 registers, P 16).
template <int kHeadDimTile, int kRowBlock = 128, bool kDynamicTileOrder = false, bool kFp8Inputs = false>
struct ForwardTile {
  static constexpr int kHeadDim = kHeadDimTile;
  static constexpr bool kDynamicOrder = kDynamicTileOrder;
  static constexpr bool kFp8 = kFp8Inputs;
  static constexpr int kBlockM = kRowBlock;
  static constexpr int kBlockN = kHeadDim <= 128 || kFp8 ? 128 : 80;
  static constexpr int kStages = kHeadDim <= 64 ? 3 : 2;
  static constexpr int kConsumerWarpgroups = kBlockM / 64;
  static constexpr int kConsumerWarps = 4 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 * (kConsumerWarpgroups + 1);
  static constexpr int kAtomColumns = kFp8 ? 128 : 64;  // columns of a 128-byte swizzle row
  static constexpr int kKStep = kFp8 ? 32 : 16;          // the k of one wgmma: 32 bytes
  static constexpr int kAtoms = (kHeadDim + kAtomColumns - 1) / kAtomColumns;  // swizzle atoms per row
  static constexpr int kQBytes = kBlockM * kAtoms * 128;
  // A K slot; a V slot holds the same tile, or with kFp8 its transpose (kHeadDim rows of
  // kBlockN keys), the larger of the two sizes.
  static constexpr int kKVBytes = kFp8 && kHeadDim > kAtoms * 128 ? kHeadDim * kBlockN : kBlockN * kAtoms * 128;
  // 1024 bytes of alignment slack, then the tiles, then (6 + 4 * kStages) barriers and the
  // two slots of the tile indices the producer hands the consumers (kDynamicOrder).
  static constexpr int kSharedBytes = 1024 + kQBytes + 2 * kStages * kKVBytes + 8 * (6 + 4 * kStages) + 8;
  // setmaxnreg: the producer needs few registers, the consumers hold S, P and O.
  // The FP8 tile above head dim 128 holds O (128 registers), S (64) and P (16): with 232,
  // ptxas serialised the wgmma; 240 leave the producer 24.
  static constexpr bool kWideConsumers = kFp8 && kHeadDim > 128;
  static constexpr int kProducerRegisters = kConsumerWarpgroups == 3 || kWideConsumers ? 24 : 40;
  static constexpr int kConsumerRegisters = kConsumerWarpgroups == 3 ? 160 : kWideConsumers ? 240 : 232;
  // Where a consumer waits for its P V product. Written right after the softmax of the
  // next scores, the wait ends up before that softmax: ptxas hoists wgmma.wait_group above
  // the independent arithmetic of its basic block (CUDA 13.0 SASS), so the softmax never
  // ran under the product. Waiting at the top of the next trip instead (another basic
  // block) keeps them overlapped: +1-3.5 % at d = 128 and 256 from 4k keys (v8). At d = 64,
  // where the exponentials load the special-function unit as much as the products load the
  // tensor cores, it cost 2-3 % then, and -3 % in the tall tile still; in the 128-row tile it
  // gains 1-2.7 % since the k-step descriptors are advanced by adds, which cost that tile
  // 6.5-9 % with the wait in the same trip (perf-notes-hopper.md, v8 and v12).
  static constexpr bool kOutputWaitAtNextTrip = kRowBlock == 128;
  // The lazy output rescale (OnlineSoftmax's kLazyRescaleLag) gained 3-4 % at d = 256 and
  // 1-2 % in the tall tile, but cost 5-7 % in the 128-row tile at d = 64 (H200 A/B,
  // perf-notes-hopper.md v11; 1 % with that tile's next-trip wait, v12), which keeps
  // rescaling whenever a row's maximum moves.
  static constexpr bool kLazyRescale = kRowBlock == 192 || kHeadDim > 64;
  // Each consumer warpgroup computes only the key tiles its own 64 rows need, not all of
  // the block's (consume_tiles). At d = 128 and 256: +0.2 to +2.5 % and +0.6 to +4.1 %
  // over the tile without (1k-8k, both masks); in the tall tile +1 to +5 % (its last row
  // tile of a 2k or 4k sequence has a warpgroup with no rows; causal 2k-8k +4 to +5 %);
  // -7 % in the 128-row d = 64 tile, whose loops ptxas then schedules differently; in the
  // 96 tile (d = 80) -0.6 to -2.5 % at 1k-4k (perf-notes-hopper.md v14, v16).
  static constexpr bool kWarpgroupKeyTiles = kHeadDim > 96 || kRowBlock == 192;
  // OnlineSoftmax's pairwise row reductions: +0.8-1.3 % non-causal and 0-1 % causal at
  // d = 64, within +-0.5 % above (perf-notes-hopper.md v15).
  static constexpr bool kPairwiseRowReductions = kHeadDim <= 64;

  static_assert(kHeadDim % 32 == 0 && kHeadDim <= 256, "sm90 head-dim tiles are multiples of 32 up to 256");
  static_assert(!kFp8 || (kRowBlock == 128 && kBlockN == 128), "the FP8 tile is 128 rows by 128 keys");
  static_assert(kRowBlock == 128 || (kRowBlock == 192 && kHeadDim <= 64), "the tall tile is for head dims up to 64");
  static_assert(!kDynamicOrder || kRowBlock == 192, "the dynamic tile order is for the tall tile");
  static_assert(kSharedBytes <= 227 * 1024, "sm90 forward tile exceeds the shared memory of a block");
  // setmaxnreg.inc waits until the block's pool has the registers, so the warpgroups'
  // counts must fit in what the launch gives the block (65536 per SM over kThreads threads,
  // in units of 8 per thread): more and the consumers wait forever.
  static_assert(kProducerRegisters * 128 + kConsumerRegisters * 128 * kConsumerWarpgroups <=
                    65536 / kThreads / 8 * 8 * kThreads,
                "register reallocation exceeds the registers of the block");
};

// Query rows (the longest sequence's) from which head dims up to 64 take the tall tile:
// from 1024 without a band mask, from 2048 under a causal or window mask (over the 128-row
// tile: +3 % at 1k and +8 to +12 % at 2k-4k without a mask; causal +1 to +4 % at 2k-4k,
// -17 % at 1k). H200 A/Bs, perf-notes-hopper.md v16.
constexpr std::int64_t tall_tile_min_rows(bool banded) { return banded ? 2048 : 1024; }

// What the tensor maps of one call are built from; the box sizes come from the tile.
struct TensorMapGeometry {
  bool float16 = false;  // of q, k, v (and dout), else bfloat16 ...
  bool fp8 = false;      // ... or FP8 e4m3 (one byte)
  std::int64_t head_dim = 0, rows_q = 0, rows_k = 0, heads_q = 0, heads_kv = 0;
  std::int64_t batch = 0;  // 1 for varlen: the packed tensors are one entry of total rows
  int multiprocessors = 0;  // of the launching device: the persistent grid's size
};

CUtensorMap make_tensor_map(const sm80::SequenceTensor& t, const TensorMapGeometry& geometry, std::int64_t rows,
                            std::int64_t heads, int box_rows);

template <int kHeadDimTile, class Element>
void launch_forward(const TensorMapGeometry& geometry, const sm80::AttentionArgs& args, cudaStream_t stream);

// FP8 inputs, output of type Element; `values` is V transposed by transpose_values_fp8.
struct TransposedValues;
template <int kHeadDimTile, class Element>
void launch_forward_fp8(const TensorMapGeometry& geometry, const sm80::AttentionArgs& args,
                        const TransposedValues& values, cudaStream_t stream);

}  // namespace tileflash::cuda::sm90
