// Host side of the Hopper forward: which calls it takes and the dispatch to the compiled
// head-dim tile.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/common/head_dim_tiles.h"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/fwd_launch.h"
#include "cuda/sm90/launch.h"
#include "cuda/sm90/launch_common.h"
#include TILEFLASH_CUDA_SM90_HEAD_DIMS_HEADER

namespace tileflash::cuda::sm90 {
namespace {

// The sm90 head-dim tiles of this build, from CMake (the multiples of 32 among
// TILEFLASH_HEAD_DIMS; none when TILEFLASH_CUDA_ARCHS lacks 90).
using CompiledTiles = HeadDimTiles<TILEFLASH_CUDA_SM90_HEAD_DIMS>;

}  // namespace

std::string forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem) {
  if (CompiledTiles::fitting(static_cast<int>(problem.head_dim)) == 0)
    return "this build has no sm_90a forward tile for head_dim " + std::to_string(problem.head_dim);
  return hopper_path_unsupported_reason(params, problem);
}

void run_forward(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  sm80::check_device_seqlens(params, problem, stream);
  const sm80::AttentionArgs args = sm80::make_attention_args(params, problem);
  const TensorMapGeometry geometry = tensor_map_geometry(params, problem);
  const int tile = CompiledTiles::fitting(static_cast<int>(problem.head_dim));
  CompiledTiles::dispatch(tile, [&](auto head_dim_tile) {
    if (geometry.float16) launch_forward<decltype(head_dim_tile)::value, __half>(geometry, args, stream);
    else launch_forward<decltype(head_dim_tile)::value, __nv_bfloat16>(geometry, args, stream);
  });
}

}  // namespace tileflash::cuda::sm90
