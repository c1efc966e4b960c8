// Host-side pieces the Hopper forward and backward launchers share: when the Hopper path
// may take a call at all, and the TMA geometry of a call.
#pragma once

#include <string>

#include "api/problem.h"
#include "cuda/sm90/fwd_launch.h"
#include "tileflash/params.h"

namespace tileflash::cuda::sm90 {

// Empty when an sm90 kernel may run this call (sm_90 device, driver entry point, no
// Ampere-only feature, TMA-compatible strides of q, k, v), else why not.
std::string hopper_path_unsupported_reason(const ForwardParams& params, const detail::Problem& problem);

// Empty when TMA can address the tensor (positive strides below 2^40 bytes), else why not.
std::string tma_stride_reason(const char* name, const TensorView& t);

// The most blocks the persistent Hopper forward launches, and the SMs the Hopper backward
// plans its last round for (tail_split.h): the device's multiprocessors, or fewer when this
// environment variable says so (read at each call).
constexpr const char* kPersistentBlocksVariable = "TILEFLASH_SM90_MAX_BLOCKS";

TensorMapGeometry tensor_map_geometry(const ForwardParams& params, const detail::Problem& problem);

}  // namespace tileflash::cuda::sm90
