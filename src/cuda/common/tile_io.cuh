// Shared-memory tiles of (rows x head-dim) 16-bit elements, filled from global memory with
// predicated cp.async and read back as mma operands with ldmatrix. Shared by the forward
// and backward kernels.
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"

namespace tileflash::cuda {

// Row-major tile padded by one 16-byte chunk per row. A row then spans an odd number of
// 16-byte chunks (kCols is a multiple of 16), so the eight row addresses of one ldmatrix
// phase, and the eight rows written by one accumulator store, fall in distinct banks.
template <class Element, int kRows, int kCols>
struct SmemTile {
  static_assert(kCols % 16 == 0, "a tile's width must be a whole number of ldmatrix 16-column steps");
  static constexpr int kChunksPerRow = kCols / 8;  // 16-byte chunks of data per row
  static constexpr int kStride = kCols + 8;        // elements between rows
  static constexpr int kBytes = kRows * kStride * static_cast<int>(sizeof(Element));

  Element* data;

  __device__ __forceinline__ Element* at(int row, int col) const { return data + row * kStride + col; }
};

// A rows x cols window of a global tensor: `rows_valid` rows exist, each of `cols_valid`
// elements (a multiple of 8), consecutive rows `row_stride` elements apart.
template <class Element>
struct GlobalTile {
  const Element* data;
  std::int64_t row_stride;
  int rows_valid;
  int cols_valid;
};

// Issue the cp.async copies of one tile (the caller commits and waits). Chunks outside the
// valid rows or columns are filled with zeros, which later products treat as absent keys
// or head-dim padding.
template <int kThreads, class Element, int kRows, int kCols>
__device__ __forceinline__ void load_tile_async(const SmemTile<Element, kRows, kCols>& tile,
                                                const GlobalTile<Element>& src) {
  using Tile = SmemTile<Element, kRows, kCols>;
  constexpr int kChunks = kRows * Tile::kChunksPerRow;
  constexpr int kSteps = (kChunks + kThreads - 1) / kThreads;
  const int thread = static_cast<int>(threadIdx.x);
  if constexpr (kThreads % Tile::kChunksPerRow == 0) {
    // Every step moves whole rows, so a thread keeps its column and walks down by a fixed
    // row count: one base pointer instead of a 64-bit address per step.
    constexpr int kRowsPerStep = kThreads / Tile::kChunksPerRow;
    const int row0 = thread / Tile::kChunksPerRow;
    const int col = (thread % Tile::kChunksPerRow) * 8;
    const Element* from = src.data + row0 * src.row_stride + col;
    const bool col_valid = col < src.cols_valid;
#pragma unroll
    for (int step = 0; step < kSteps; ++step) {
      const int row = row0 + step * kRowsPerStep;
      if (kChunks % kThreads != 0 && row >= kRows) break;
      const bool valid = col_valid && row < src.rows_valid;
      ptx::cp_async_16(tile.at(row, col), valid ? from : src.data, valid);
      from += kRowsPerStep * src.row_stride;
    }
  } else {
#pragma unroll
    for (int step = 0; step < kSteps; ++step) {
      const int chunk = thread + step * kThreads;
      if (kChunks % kThreads != 0 && chunk >= kChunks) break;
      const int row = chunk / Tile::kChunksPerRow;
      const int col = (chunk % Tile::kChunksPerRow) * 8;
      const bool valid = row < src.rows_valid && col < src.cols_valid;
      const Element* from = valid ? src.data + row * src.row_stride + col : src.data;
      ptx::cp_async_16(tile.at(row, col), from, valid);
    }
  }
}

// Copy the valid part of a tile to global memory with 16-byte stores; threads of the
// calling group `group_thread` in [0, kGroupThreads) share the rows [row_begin, row_end).
template <int kGroupThreads, class Element, int kRows, int kCols>
__device__ __forceinline__ void store_tile(const SmemTile<Element, kRows, kCols>& tile, int row_begin, int row_end,
                                           Element* dst, std::int64_t row_stride, int rows_valid, int cols_valid,
                                           int group_thread) {
  using Tile = SmemTile<Element, kRows, kCols>;
  const int chunks = (row_end - row_begin) * Tile::kChunksPerRow;
  for (int chunk = group_thread; chunk < chunks; chunk += kGroupThreads) {
    const int row = row_begin + chunk / Tile::kChunksPerRow;
    const int col = (chunk % Tile::kChunksPerRow) * 8;
    if (row < rows_valid && col < cols_valid)
      *reinterpret_cast<uint4*>(dst + row * row_stride + col) = *reinterpret_cast<const uint4*>(tile.at(row, col));
  }
}

// ldmatrix operand loads. Each reads a 16x16 block whose top-left corner is (row0, col0).
// A operand (row-major M x K): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
// (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
template <class Element, int kRows, int kCols>
__device__ __forceinline__ void load_a_operand(const SmemTile<Element, kRows, kCols>& tile, int row0, int col0,
                                               std::uint32_t (&a)[4]) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  ptx::ldmatrix_x4(a, tile.at(row0 + (lane & 7) + ((lane >> 3) & 1) * 8, col0 + (lane >> 4) * 8));
}

// B operands of two neighbouring n-tiles from a tile stored n-major (row = n, col = k),
// e.g. K for S = QK^T: b[0] covers n 0-7, b[1] n 8-15.
template <class Element, int kRows, int kCols>
__device__ __forceinline__ void load_b_operand_pair(const SmemTile<Element, kRows, kCols>& tile, int n0, int k0,
                                                    std::uint32_t (&b)[2][2]) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  std::uint32_t r[4];
  ptx::ldmatrix_x4(r, tile.at(n0 + (lane & 7) + (lane >> 4) * 8, k0 + ((lane >> 3) & 1) * 8));
  b[0][0] = r[0];
  b[0][1] = r[1];
  b[1][0] = r[2];
  b[1][1] = r[3];
}

// B operands of two neighbouring n-tiles from a tile stored k-major (row = k, col = n),
// e.g. V for O = PV: transposed on the fly by ldmatrix.trans.
template <class Element, int kRows, int kCols>
__device__ __forceinline__ void load_b_operand_pair_trans(const SmemTile<Element, kRows, kCols>& tile, int k0,
                                                          int n0, std::uint32_t (&b)[2][2]) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  std::uint32_t r[4];
  ptx::ldmatrix_x4_trans(r, tile.at(k0 + (lane & 7) + ((lane >> 3) & 1) * 8, n0 + (lane >> 4) * 8));
  b[0][0] = r[0];
  b[0][1] = r[1];
  b[1][0] = r[2];
  b[1][1] = r[3];
}

}  // namespace tileflash::cuda
