// The forward kernels compiled into this build: one launch_forward per (head-dim tile,
// element type), each instantiated in its own translation unit generated from
// fwd_kernel.cu.in, and the choice of tile for a head dim.
#pragma once

#include <cuda_runtime.h>

#include "cuda/sm80/launch_args.h"
#include TILEFLASH_CUDA_HEAD_DIMS_HEADER

namespace tileflash::cuda::sm80 {

template <int kHeadDimTile, class Element>
void launch_forward(const AttentionArgs& args, cudaStream_t stream);

// The head-dim tiles of this build (TILEFLASH_HEAD_DIMS, ascending), from CMake.
template <int... kTiles>
struct HeadDimTiles {
  // The smallest tile that holds head_dim, 0 if none does.
  static constexpr int fitting(int head_dim) {
    int best = 0;
    for (int tile : {kTiles...})
      if (tile >= head_dim && (best == 0 || tile < best)) best = tile;
    return best;
  }
  static constexpr int largest() {
    int best = 0;
    for (int tile : {kTiles...}) best = tile > best ? tile : best;
    return best;
  }
  // Calls launch_forward for the tile `tile` (one of kTiles).
  template <class Element>
  static void launch(int tile, const AttentionArgs& args, cudaStream_t stream) {
    ((tile == kTiles ? launch_forward<kTiles, Element>(args, stream) : void()), ...);
  }
};

using CompiledHeadDimTiles = HeadDimTiles<TILEFLASH_CUDA_HEAD_DIMS>;

}  // namespace tileflash::cuda::sm80
