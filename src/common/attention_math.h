// The definition of the attention logits and mask, shared by every backend.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace tileflash::detail {

// Bottom-right aligned band mask. diagonal offset = seq_k - seq_q, so with
// causal masking the last query row sees every key. A negative side is unbounded.
struct BandMask {
  std::int64_t seq_q = 0, seq_k = 0;
  std::int64_t window_left = -1, window_right = -1;

  TF_HOST_DEVICE std::int64_t diagonal(std::int64_t row) const { return row + seq_k - seq_q; }
  TF_HOST_DEVICE bool allowed(std::int64_t row, std::int64_t col) const {
    const std::int64_t rel = col - diagonal(row);
    return col >= 0 && col < seq_k && (window_left < 0 || rel >= -window_left) &&
           (window_right < 0 || rel <= window_right);
  }
  // Columns [first, last) that row may attend; empty when first >= last.
  TF_HOST_DEVICE std::int64_t first_col(std::int64_t row) const {
    const std::int64_t lo = window_left < 0 ? 0 : diagonal(row) - window_left;
    return lo < 0 ? 0 : lo;
  }
  TF_HOST_DEVICE std::int64_t end_col(std::int64_t row) const {
    const std::int64_t hi = window_right < 0 ? seq_k : diagonal(row) + window_right + 1;
    return hi > seq_k ? seq_k : (hi < 0 ? 0 : hi);
  }
};

// Row blocks [first, end) of `block_rows` rows (block r holds rows r * block_rows ..) that
// lie wholly inside the sequence and whose every row may attend every column of
// [col_begin, col_end): the blocks that need no mask against those columns. first >= end
// when there are none. The band's relative offset col - diagonal(row) is largest at the
// block's first row and last column and smallest at its last row and first column, so the
// two corners bound the block from below (window_right) and from above (window_left).
struct RowBlockRange {
  std::int64_t first = 0, end = 0;
  TF_HOST_DEVICE bool contains(std::int64_t block) const { return block >= first && block < end; }
};
TF_HOST_DEVICE RowBlockRange unmasked_row_blocks(const BandMask& mask, std::int64_t col_begin, std::int64_t col_end,
                                                 std::int64_t block_rows) {
  if (col_begin < 0 || col_end > mask.seq_k || col_begin >= col_end) return {};
  const std::int64_t shift = mask.seq_k - mask.seq_q;
  std::int64_t lowest_row = 0, highest_last_row = mask.seq_q - 1;  // bounds on the first and the last row
  if (mask.window_right >= 0) {
    const std::int64_t bound = col_end - 1 - shift - mask.window_right;
    lowest_row = bound > lowest_row ? bound : lowest_row;
  }
  if (mask.window_left >= 0) {
    const std::int64_t bound = col_begin - shift + mask.window_left;
    highest_last_row = bound < highest_last_row ? bound : highest_last_row;
  }
  // first row r * block_rows >= lowest_row; last row r * block_rows + block_rows - 1 <= highest_last_row.
  const std::int64_t top = highest_last_row - (block_rows - 1);
  if (top < lowest_row) return {};
  return {(lowest_row + block_rows - 1) / block_rows, top / block_rows + 1};
}

// ALiBi bias term: -slope * |i + seq_k - seq_q - j|.
TF_HOST_DEVICE float alibi_bias(float slope, const BandMask& mask, std::int64_t row, std::int64_t col) {
  const std::int64_t dist = col - mask.diagonal(row);
  return -slope * static_cast<float>(dist < 0 ? -dist : dist);
}

}  // namespace tileflash::detail
