// The plain argument block every Ampere-class kernel takes, built on the host from the
// validated params. The backward extends it with its own tensors.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cuda::sm80 {

// One (batch, seq, heads, head_dim) tensor, or a packed (total, heads, head_dim) one
// (batch_stride unused: rows are addressed through cu_seqlens).
struct SequenceTensor {
  void* data = nullptr;
  std::int64_t batch_stride = 0, row_stride = 0, head_stride = 0;
};

struct AttentionArgs {
  SequenceTensor q, k, v, out;

  // float32; (batch, heads_q, seq_q), or (heads_q, total_q) with batch_stride 0.
  float* lse = nullptr;
  std::int64_t lse_batch_stride = 0, lse_head_stride = 0, lse_row_stride = 0;

  const std::int32_t* cu_seqlens_q = nullptr;  // device; nullptr: fixed lengths
  const std::int32_t* cu_seqlens_k = nullptr;
  int batch = 0, heads_q = 0, heads_kv = 0, head_dim = 0;
  std::int64_t seq_q = 0, seq_k = 0;  // varlen: the maxima

  std::int64_t window_left = -1, window_right = -1;
  float scale = 1.0f;
  float softcap = 0.0f;

  const void* bias = nullptr;
  bool bias_is_float32 = false;
  std::int64_t bias_batch_stride = 0, bias_head_stride = 0, bias_row_stride = 0, bias_col_stride = 0;

  const float* alibi_slopes = nullptr;
  std::int64_t alibi_batch_stride = 0, alibi_head_stride = 0;

  // FP8 inputs (the Hopper forward): device float32 per-tensor scales, nullptr = 1.
  const float* q_descale = nullptr;
  const float* k_descale = nullptr;
  const float* v_descale = nullptr;

  std::uint32_t dropout_threshold = 0;  // 0: no dropout
  float dropout_rescale = 1.0f;         // 1 / (1 - p)
  std::uint64_t dropout_seed = 0, dropout_offset = 0;

  bool has_logit_extras() const {
    return softcap > 0.0f || bias != nullptr || alibi_slopes != nullptr || dropout_threshold != 0 || !(scale > 0.0f);
  }
};

// Empty when one tensor suits the vectorised kernels (16-byte aligned base pointer and
// strides), else the reason naming it.
std::string misaligned_reason(const char* name, const TensorView& t);

// The strides of a (batch, seq, heads, head_dim) or packed (total, heads, head_dim) view.
SequenceTensor sequence_tensor(const TensorView& t, bool varlen);

// Empty when the tensors suit the vectorised kernels (16-byte aligned bases and row
// strides, head_dim a multiple of 8), else the reason naming the argument.
std::string alignment_unsupported_reason(const ForwardParams& params, const detail::Problem& problem);

// Copies device-resident cu_seqlens to the host and checks them as validate.cpp checks
// host ones; skipped while the stream is being captured into a graph, where the copy
// would break the capture.
void check_device_seqlens(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream);

AttentionArgs make_attention_args(const ForwardParams& params, const detail::Problem& problem);

// The positive integer in environment variable `variable`, or `unset` when it is not set;
// anything else is an Error naming the variable ("must be a positive number of <unit>").
long long positive_environment_value(const char* variable, const char* unit, long long unset);

// The shared memory a block of the current device may opt into, lowered to the
// environment variable TILEFLASH_SMEM_LIMIT_BYTES when set, so one large GPU runs (and
// tests) the tiles of smaller ones (sm_86/89/120: 99 KiB). Read at every launch.
constexpr const char* kSharedMemoryCapVariable = "TILEFLASH_SMEM_LIMIT_BYTES";
int device_shared_memory_per_block();

// Throws tileflash::RuntimeError with the CUDA error string.
void check_cuda(cudaError_t status, const char* what);

}  // namespace tileflash::cuda::sm80
