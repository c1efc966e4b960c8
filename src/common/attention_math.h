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

// ALiBi bias term: -slope * |i + seq_k - seq_q - j|.
TF_HOST_DEVICE float alibi_bias(float slope, const BandMask& mask, std::int64_t row, std::int64_t col) {
  const std::int64_t dist = col - mask.diagonal(row);
  return -slope * static_cast<float>(dist < 0 ? -dist : dist);
}

}  // namespace tileflash::detail
