// tileflash: public entry points.
#pragma once

#include <string>

#include "tileflash/error.h"
#include "tileflash/params.h"
#include "tileflash/tensor.h"

namespace tileflash {

// What the selector chose for a call: the backend and the code path within it
// (e.g. "reference", "tiled", "sm80", "sm90").
struct KernelChoice {
  Backend backend = Backend::automatic;
  std::string kernel;
};

// Validate params and pick the kernel without running anything. Throws
// tileflash::Error naming the argument and the rule it broke if the call is
// invalid or no compiled kernel supports it.
KernelChoice select_forward(const ForwardParams& params);
KernelChoice select_backward(const BackwardParams& params);

// Non-throwing form of the selector: true when the call would run. On false,
// `reason` (if given) receives the error message.
bool is_supported(const ForwardParams& params, std::string* reason = nullptr);
bool is_supported(const BackwardParams& params, std::string* reason = nullptr);

// Run attention. Validates first; nothing is written when validation fails.
// CUDA calls are asynchronous on params.cuda_stream.
KernelChoice forward(const ForwardParams& params);
KernelChoice backward(const BackwardParams& params);

// Whether the CUDA backend was compiled in, and how many devices it sees.
bool cuda_available();
int cuda_device_count();

}  // namespace tileflash
