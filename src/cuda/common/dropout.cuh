// Dropout on register tiles of P, drawing the Philox stream of src/common/philox.h so the
// GPU keeps exactly the entries the CPU backends keep. Shared by forward and backward.
#pragma once

#include <cstdint>

#include "common/philox.h"
#include "cuda/common/fragment.cuh"

namespace tileflash::cuda {

struct DropoutStream {
  std::uint64_t seed;
  std::uint64_t offset;
  std::uint32_t threshold;  // detail::dropout_threshold(p): words below it are dropped
};

// Zeroes the dropped entries of a tile of P whose corner is (row0, col0) in the
// sequence's local coordinates. A lane holds columns 2t, 2t + 1 of each 8-wide n-tile:
// both lie in Philox group (col0 + 8 ni + 2t) / 4 (col0 is a multiple of 8), so one
// Philox call serves the pair.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void apply_dropout(AccumulatorTile<kMTiles, kNTiles>& p, const DropoutStream& stream,
                                              std::uint32_t batch_head, std::int64_t row0, std::int64_t col0) {
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const auto row = static_cast<std::uint32_t>(row0 + 16 * mi + 8 * h + lane_group());
#pragma unroll
      for (int ni = 0; ni < kNTiles; ++ni) {
        const auto col = static_cast<std::uint32_t>(col0 + 8 * ni + 2 * lane_in_group());
        const detail::Philox4 bits = detail::dropout_bits(stream.seed, stream.offset, batch_head, row, col >> 2);
        const int word = static_cast<int>(col & 3u);
        if (detail::philox_word(bits, word) < stream.threshold) p.value[mi][ni][2 * h] = 0.0f;
        if (detail::philox_word(bits, word + 1) < stream.threshold) p.value[mi][ni][2 * h + 1] = 0.0f;
      }
    }
}

}  // namespace tileflash::cuda
