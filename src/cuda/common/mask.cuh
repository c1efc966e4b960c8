// The band mask (causal, sliding window, sequence ends) on register tiles, and which key
// tiles a block of query rows needs at all. Shared by the forward and backward kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/attention_math.h"
#include "cuda/common/fragment.cuh"

namespace tileflash::cuda {

// Calls f(value, row, col) for every accumulator value of this lane, with the row and
// column of the whole score matrix (the warp tile's corner is (row0, col0)).
template <int kMTiles, int kNTiles, class F>
__device__ __forceinline__ void for_each_score(AccumulatorTile<kMTiles, kNTiles>& acc, std::int64_t row0,
                                               std::int64_t col0, F&& f) {
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        f(acc.value[mi][ni][e], row0 + accumulator_row(mi, e), col0 + accumulator_col(ni, e));
}

// The allowed columns [first_col, end_col) of the accumulator rows this lane holds (rows
// row0 + 16 mi + 8 h + lane_group()), clamped to [0, seq_k] so they fit in 32 bits. A
// kernel that masks several key tiles of the same rows computes them once: rebuilt per
// tile, the 64-bit intervals cost the sm90 forward ~36 instructions per key tile, which
// ptxas hoisted ahead of the test of whether the tile needs a mask at all.
template <int kMTiles>
struct RowIntervals {
  int first[kMTiles][2], end[kMTiles][2];

  __device__ __forceinline__ RowIntervals(const detail::BandMask& mask, std::int64_t row0) {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const std::int64_t row = row0 + 16 * mi + 8 * h + lane_group();
        const std::int64_t lo = mask.first_col(row);
        first[mi][h] = static_cast<int>(lo < mask.seq_k ? lo : mask.seq_k);
        end[mi][h] = static_cast<int>(mask.end_col(row));
      }
  }
};

// Disallowed scores become -inf, so they vanish from the softmax (exp2(-inf) = 0). Each
// row's allowed columns form one interval, so the test per score is two 32-bit compares
// against the tile-local interval; col0 is the tile's first column.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void apply_row_intervals(AccumulatorTile<kMTiles, kNTiles>& acc,
                                                   const RowIntervals<kMTiles>& rows, int col0) {
  const auto local = [&](int col) {
    const int c = col - col0;
    return c < 0 ? -1 : (c > 8 * kNTiles ? 8 * kNTiles : c);
  };
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int first = local(rows.first[mi][h]), end = local(rows.end[mi][h]);
#pragma unroll
      for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = accumulator_col(ni, c);
          if (col < first || col >= end) acc.value[mi][ni][2 * h + c] = -INFINITY;
        }
    }
}

template <int kMTiles, int kNTiles>
__device__ __forceinline__ void apply_band_mask(AccumulatorTile<kMTiles, kNTiles>& acc, const detail::BandMask& mask,
                                                std::int64_t row0, std::int64_t col0) {
  apply_row_intervals(acc, RowIntervals<kMTiles>(mask, row0), static_cast<int>(col0));
}

// The same mask on a transposed score tile, rows keys and columns query rows (the Hopper
// backward computes S^T = K Q^T): each column's allowed keys are one interval, and query
// rows at or past the sequence's end allow none.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void apply_band_mask_transposed(AccumulatorTile<kMTiles, kNTiles>& acc,
                                                           const detail::BandMask& mask, std::int64_t key0,
                                                           std::int64_t query0) {
  const auto local = [&](std::int64_t key) {
    const std::int64_t k = key - key0;
    return static_cast<int>(k < 0 ? -1 : (k > 16 * kMTiles ? 16 * kMTiles : k));
  };
#pragma unroll
  for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const std::int64_t query = query0 + accumulator_col(ni, c);
      const int first = local(mask.first_col(query));
      const int end = query < mask.seq_q ? local(mask.end_col(query)) : -1;
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int key = 16 * mi + 8 * h + lane_group();
          if (key < first || key >= end) acc.value[mi][ni][2 * h + c] = -INFINITY;
        }
    }
}

// The key tiles [begin, end) of width kBlockN that query rows [row_begin, row_end) touch,
// and the subrange where no score of the block is masked (so the mask can be skipped).
struct KeyTileRange {
  int begin = 0, end = 0;
  int unmasked_begin = 0, unmasked_end = 0;

  __device__ __forceinline__ bool empty() const { return begin >= end; }
  __device__ __forceinline__ bool needs_mask(int tile) const { return tile < unmasked_begin || tile >= unmasked_end; }
};

template <int kBlockN>
__device__ __forceinline__ KeyTileRange key_tiles_for_rows(const detail::BandMask& mask, std::int64_t row_begin,
                                                           std::int64_t row_end) {
  KeyTileRange range;
  if (row_begin >= row_end) return range;
  // first_col and end_col are non-decreasing in the row, so the block's first and last
  // rows bound the union (and the intersection) of the rows' allowed columns.
  const std::int64_t union_first = mask.first_col(row_begin), union_end = mask.end_col(row_end - 1);
  const std::int64_t common_first = mask.first_col(row_end - 1), common_end = mask.end_col(row_begin);
  if (union_first >= union_end) return range;
  range.begin = static_cast<int>(union_first / kBlockN);
  range.end = static_cast<int>((union_end + kBlockN - 1) / kBlockN);
  range.unmasked_begin = static_cast<int>((common_first + kBlockN - 1) / kBlockN);
  range.unmasked_end = static_cast<int>(common_end / kBlockN);
  if (common_first >= common_end) range.unmasked_begin = range.unmasked_end = range.begin;
  return range;
}

}  // namespace tileflash::cuda
