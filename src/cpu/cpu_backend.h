// CPU backends: the materialised reference and the tiled FlashAttention kernels.
#pragma once

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cpu {

// Ground truth: materialises S and P per (batch, head) with fp64 accumulation.
// Accepts float64 tensors besides the low-precision ones.
void reference_forward(const ForwardParams& params, const detail::Problem& problem);
void reference_backward(const BackwardParams& params, const detail::Problem& problem);

// Online-softmax tiled forward and recomputation backward; fp32 arithmetic;
// float32, float16 and bfloat16 tensors. Extra memory O(seq * head_dim).
void tiled_forward(const ForwardParams& params, const detail::Problem& problem);
void tiled_backward(const BackwardParams& params, const detail::Problem& problem);

}  // namespace tileflash::cpu
