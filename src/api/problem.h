// The validated, resolved description of one attention call, shared by every backend.
#pragma once

#include <cstdint>

#include "common/attention_math.h"
#include "tileflash/params.h"

namespace tileflash::detail {

struct Problem {
  bool varlen = false;
  std::int64_t batch = 0;
  std::int64_t seq_q = 0, seq_k = 0;      // varlen: the maximum over sequences
  std::int64_t total_q = 0, total_k = 0;  // varlen: rows of the packed q and k
  std::int64_t heads_q = 0, heads_kv = 0, head_dim = 0;
  DType dtype = DType::float32;      // of q, k, v
  DType out_dtype = DType::float32;  // of out: dtype, except bfloat16/float16 for float8_e4m3 inputs
  DeviceType device = DeviceType::cpu;
  float scale = 1.0f;
  std::int64_t window_left = -1, window_right = -1;  // causal folded in
  bool has_bias = false, has_alibi = false, has_dropout = false, has_softcap = false, has_lse = false;

  std::int64_t group_size() const { return heads_q / heads_kv; }
  // The band mask of one sequence of lengths (seq_q, seq_k).
  BandMask mask(std::int64_t sequence_q, std::int64_t sequence_k) const {
    return BandMask{sequence_q, sequence_k, window_left, window_right};
  }
};

// Check every rule of the API (see docs/api.md); throws tileflash::Error naming
// the argument and the rule. Backend-specific limits are checked by the selector.
Problem validate_forward(const ForwardParams& params);
Problem validate_backward(const BackwardParams& params);

}  // namespace tileflash::detail
