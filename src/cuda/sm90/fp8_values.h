// V of an FP8 forward call, transposed for the P V product.
//
// FP8 wgmma reads its B operand K-major only, so for O += P V the keys (the reduction
// dimension) must be contiguous: V (keys x head_dim) is copied to V^T, one (head_dim x
// keys) matrix per (batch, kv head), before the attention kernel runs. The copy also
// permutes the keys inside every group of 16. P comes from the S accumulators, where lane
// t of a quad holds the key columns 2t, 2t + 1, 2t + 8 and 2t + 9 of each 16; the FP8 A
// operand wants the four bytes of a register to be the reduction positions 4t .. 4t + 3.
// Instead of exchanging bytes between lanes, position 4t + i of V^T holds the key that
// lane's i-th value belongs to (kTransposedKeyOfPosition), and the products pair them up.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/host_device.h"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/fwd_launch.h"

namespace tileflash::cuda::sm90 {

// One TMA box of V^T spans 128 keys (one 128-byte swizzle row).
constexpr unsigned kTransposedKeysPerBox = 128;

// The key (0-15, within its group of 16) whose value sits at reduction position p.
TF_HOST_DEVICE constexpr int transposed_key_of_position(int p) {
  return 2 * (p / 4) + (p & 1) + 8 * ((p >> 1) & 1);
}

// Where sequence `batch` starts in a V^T row: at its key 0 for fixed lengths (each batch
// entry has its own matrices), else in the packed row at its first key plus 16 per
// earlier sequence, rounded up to a multiple of 16, so every sequence starts a permutation
// group (and a 16-byte TMA coordinate).
TF_HOST_DEVICE constexpr std::int64_t transposed_key_begin(bool varlen, std::int64_t k_begin, int batch) {
  return varlen ? (k_begin + 16 * static_cast<std::int64_t>(batch) + 15) / 16 * 16 : 0;
}

// Device memory holding V^T: (batch or 1, heads_kv, head_dim, key_pitch) bytes.
struct TransposedValues {
  unsigned char* data = nullptr;
  std::int64_t key_pitch = 0;  // bytes between rows, a multiple of 16
};

// The row pitch of V^T for this call (its bytes: batch entries x heads_kv x head_dim rows).
std::int64_t transposed_key_pitch(const sm80::AttentionArgs& args, std::int64_t rows_k);

// Writes V^T on `stream` (keys past each sequence's end up to its next group of 16 are
// zero; with varlen the whole buffer is cleared first, so the gaps between sequences are
// zeros too: a TMA box reads past a sequence's end, and P is 0 there only if V is finite).
void transpose_values_fp8(const sm80::AttentionArgs& args, const TransposedValues& values, std::int64_t bytes,
                          cudaStream_t stream);

// The TMA map of V^T: boxes of 128 keys x box_rows head-dim rows.
CUtensorMap make_transposed_values_map(const TransposedValues& values, const TensorMapGeometry& geometry,
                                       int box_rows);

}  // namespace tileflash::cuda::sm90
