// The band mask's block-level helper (src/common/attention_math.h), checked against the
// element-wise mask: unmasked_row_blocks must name exactly the row blocks whose every
// element is inside the sequence and allowed.
#include <gtest/gtest.h>

#include <cstdint>

#include "common/attention_math.h"

namespace tileflash::testing {
namespace {

using detail::BandMask;
using detail::RowBlockRange;
using detail::unmasked_row_blocks;

bool block_fully_allowed(const BandMask& mask, std::int64_t block, std::int64_t block_rows, std::int64_t col_begin,
                         std::int64_t col_end) {
  if (block * block_rows + block_rows > mask.seq_q) return false;
  for (std::int64_t i = block * block_rows; i < block * block_rows + block_rows; ++i)
    for (std::int64_t j = col_begin; j < col_end; ++j)
      if (!mask.allowed(i, j)) return false;
  return true;
}

TEST(BandMask, UnmaskedRowBlocksMatchTheElementwiseMask) {
  int checked = 0, nonempty = 0;
  for (const std::int64_t seq_q : {1, 5, 16, 37, 64})
    for (const std::int64_t seq_k : {1, 7, 16, 40, 64})
      for (const std::int64_t left : {-1, 0, 3, 17})
        for (const std::int64_t right : {-1, 0, 2, 9})
          for (const std::int64_t block_rows : {1, 4, 8})
            for (const std::int64_t block_cols : {1, 8, 16})
              for (std::int64_t col_begin = 0; col_begin < seq_k + block_cols; col_begin += block_cols) {
                const BandMask mask{seq_q, seq_k, left, right};
                const std::int64_t col_end = col_begin + block_cols;
                const RowBlockRange range = unmasked_row_blocks(mask, col_begin, col_end, block_rows);
                for (std::int64_t block = 0; block * block_rows < seq_q + block_rows; ++block) {
                  const bool expected = col_end <= seq_k && block_fully_allowed(mask, block, block_rows, col_begin, col_end);
                  ASSERT_EQ(range.contains(block), expected)
                      << "seq_q " << seq_q << " seq_k " << seq_k << " window " << left << "," << right << " rows "
                      << block_rows << " columns [" << col_begin << ", " << col_end << ") block " << block;
                  ++checked;
                  nonempty += expected;
                }
              }
  EXPECT_GT(nonempty, 1000) << "the grid should contain many unmasked blocks";
  EXPECT_GT(checked - nonempty, 1000) << "and many masked ones";
}

}  // namespace
}  // namespace tileflash::testing
