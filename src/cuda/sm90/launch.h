// Entry points of the Hopper (sm_90a) kernels, called by src/cuda/cuda_backend.cu.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cuda::sm90 {

// Set to 1, keeps every call on the Ampere-class kernels (tests and benchmarks run both
// paths on one Hopper GPU). Read at every selection.
constexpr const char* kForceSm80Variable = "TILEFLASH_FORCE_SM80";

// Empty when the Hopper forward runs this call, else why not (the caller then falls back
// to the Ampere-class kernel, which supports everything this path declines).
std::string forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem);

// For float8_e4m3 inputs, which only the Hopper forward takes: empty when it runs this
// call, else the error ("argument: rule").
std::string fp8_forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem);

// Runs the Hopper forward (FP8 inputs included).
void run_forward(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream);

// The same for the backward; it also declines deterministic mode (its dQ reductions add in
// arrival order) and head dims above 128.
std::string backward_unsupported_reason(const BackwardParams& params, const detail::Problem& problem);

void run_backward(const BackwardParams& params, const detail::Problem& problem, cudaStream_t stream);

}  // namespace tileflash::cuda::sm90
