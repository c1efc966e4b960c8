// The tiled CPU FlashAttention with an explicit kernel set (tests run every set the
// machine supports; the backend entry points use tiled::best_kernels()).
#pragma once

#include "api/problem.h"
#include "cpu/tiled_kernels.h"
#include "tileflash/params.h"

namespace tileflash::cpu::tiled {

void forward(const ForwardParams& params, const detail::Problem& problem, const KernelSet& kernels);
void backward(const BackwardParams& params, const detail::Problem& problem, const KernelSet& kernels);

}  // namespace tileflash::cpu::tiled
