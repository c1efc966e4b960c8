// The forward kernels compiled into this build: one launch_forward per (head-dim tile,
// element type), each instantiated in its own translation unit generated from
// fwd_kernel.cu.in, and the choice of tile for a head dim.
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/head_dim_tiles.h"
#include "cuda/sm80/launch_args.h"
#include TILEFLASH_CUDA_HEAD_DIMS_HEADER

namespace tileflash::cuda::sm80 {

template <int kHeadDimTile, class Element>
void launch_forward(const AttentionArgs& args, cudaStream_t stream);

// The head-dim tiles of this build (TILEFLASH_HEAD_DIMS), from CMake.
using CompiledHeadDimTiles = HeadDimTiles<TILEFLASH_CUDA_HEAD_DIMS>;

}  // namespace tileflash::cuda::sm80
