// Entry points of the Ampere-class (mma.sync) kernels, called by src/cuda/cuda_backend.cu.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cuda::sm80 {

// Empty string when supported, else the reason (names the argument and the rule).
std::string forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem);
std::string backward_unsupported_reason(const BackwardParams& params, const detail::Problem& problem);

void run_forward(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream);
void run_backward(const BackwardParams& params, const detail::Problem& problem, cudaStream_t stream);

}  // namespace tileflash::cuda::sm80
