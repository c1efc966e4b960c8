// tileflash: the parameters of one attention operation.
//
// Logical layout (flash-attn's): q is (batch, seq_q, heads_q, head_dim), k and v
// are (batch, seq_k, heads_kv, head_dim). Strides are free, so a
// (batch, heads, seq, dim) buffer is passed as a transposed view without a copy.
// Variable-length packed batches drop the batch dimension: q is
// (total_q, heads_q, head_dim) and cu_seqlens_q (int32, batch + 1 entries,
// starting at 0, non-decreasing) marks where each sequence starts.
#pragma once

#include <cstdint>
#include <optional>

#include "tileflash/tensor.h"

namespace tileflash {

enum class Backend : std::uint8_t {
  automatic,  // the fastest backend for the tensors' device
  reference,  // CPU, materialises S = QK^T and P, fp64 accumulation
  cpu,        // CPU, tiled online-softmax FlashAttention
  cuda,       // NVIDIA GPU fused kernels
};

const char* backend_name(Backend b);

struct ForwardParams {
  TensorView q, k, v;
  TensorView out;  // written: shape of q, dtype of q (bfloat16 or float16 for float8_e4m3 inputs)
  TensorView lse;  // optional output, float32: (batch, heads_q, seq_q), varlen (heads_q, total_q);
                   // natural-log log-sum-exp of the (scaled, capped, biased, masked) logits

  TensorView cu_seqlens_q, cu_seqlens_k;   // varlen: both or neither, int32 (batch + 1)
  std::int64_t max_seqlen_q = 0;           // varlen: upper bound of any sequence length;
  std::int64_t max_seqlen_k = 0;           // 0 = derive from the offsets (reads them)

  std::optional<float> softmax_scale;  // default 1 / sqrt(head_dim)

  // Masking. Query row i may attend key column j when
  //   i + seq_k - seq_q - window_left <= j <= i + seq_k - seq_q + window_right
  // (a negative window side is unbounded), i.e. windows are aligned to the
  // bottom-right corner of the score matrix as in flash-attn >= 2.1.
  // causal is window_right = 0.
  bool causal = false;
  std::int64_t window_left = -1;
  std::int64_t window_right = -1;

  // Logits: s = scale * q.k; s = softcap * tanh(s / softcap) if softcap > 0;
  // s += bias[b, h, i, j]; s -= alibi_slope[h] * |i + seq_k - seq_q - j|.
  float softcap = 0.0f;
  TensorView bias;          // optional, (batch|1, heads_q|1, seq_q, seq_k), dtype of q or float32;
                            // varlen: (batch|1, heads_q|1, max_seqlen_q, max_seqlen_k), local indices
  TensorView alibi_slopes;  // optional, float32 (heads_q) or (batch, heads_q)

  // Dropout on P with Philox 4x32-10 (see src/common/philox.h for the stream,
  // which every backend draws identically). Kept entries are scaled by 1/(1-p).
  float dropout_p = 0.0f;
  std::uint64_t dropout_seed = 0;
  std::uint64_t dropout_offset = 0;

  // FP8 inputs (forward only, reference and cuda backends): q, k and v of dtype
  // float8_e4m3 hold their values divided by per-tensor scales. These optional float32
  // tensors of one element, on q's device, give the factors back (absent = 1): the logits
  // use scale * q_descale * k_descale, and the output is multiplied by v_descale.
  TensorView q_descale, k_descale, v_descale;

  Backend backend = Backend::automatic;
  int num_threads = 0;            // CPU backends; 0 = all hardware threads
  void* cuda_stream = nullptr;    // CUDA backend; cudaStream_t, nullptr = default stream
};

struct BackwardParams : ForwardParams {
  // Inputs of the backward besides q, k, v: out and lse from the forward
  // (lse is required here), and the output gradient dout (shape of out).
  TensorView dout;
  // Outputs: shapes of q, k, v. With GQA, dk/dv sum over the query heads of a group.
  TensorView dq, dk, dv;
  // Bitwise-identical gradients across runs (GPU: no atomics in reductions).
  bool deterministic = false;
};

}  // namespace tileflash
