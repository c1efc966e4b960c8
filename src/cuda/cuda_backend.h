// The CUDA backend as the dispatcher sees it. Implemented in src/cuda/ when the
// library is built with CUDA, and by src/api/no_cuda.cpp otherwise.
#pragma once

#include <string>

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cuda {

bool available();
int device_count();

// The kernel that would run ("sm80", "sm90", ...); throws tileflash::Error
// naming the argument and the rule when no compiled kernel supports the call.
std::string select_forward(const ForwardParams& params, const detail::Problem& problem);
std::string select_backward(const BackwardParams& params, const detail::Problem& problem);

// Launch on params.cuda_stream (asynchronous).
void forward(const ForwardParams& params, const detail::Problem& problem, const std::string& kernel);
void backward(const BackwardParams& params, const detail::Problem& problem, const std::string& kernel);

}  // namespace tileflash::cuda
