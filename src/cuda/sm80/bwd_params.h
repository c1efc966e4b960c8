// The plain parameter block every backward kernel takes: the forward's AttentionArgs (q, k,
// v, out, the required lse, mask, logit transforms, dropout) plus the gradients and the
// per-call workspace. Filled on the host by src/cuda/sm80/bwd_launch.cu.
#pragma once

#include <cstdint>

#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda::sm80 {

struct BackwardKernelParams {
  AttentionArgs attn;
  SequenceTensor dout, dq, dk, dv;
  std::int64_t rows_q = 0;  // rows of the packed query index: batch * seq_q, or total_q
  std::int64_t rows_k = 0;  // likewise for keys
  bool deterministic = false;

  // Workspace (device, allocated per call on the stream).
  float* dout_dot_out = nullptr;  // D = rowsum(dO * O), (heads_q, rows_q)
  float* dq_accum = nullptr;      // fp32, unscaled, in mma tile order (dq_accum_rows)
  int* dq_semaphore = nullptr;    // deterministic mode: (batch, heads_q, m_blocks)
  int m_blocks = 0;               // query blocks of the longest sequence
};

}  // namespace tileflash::cuda::sm80
