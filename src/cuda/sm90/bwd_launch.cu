// Host side of the Hopper backward: which calls it takes and the dispatch to the compiled
// head-dim tile (64, 96, 128 or 256).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/common/head_dim_tiles.h"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/bwd_launch.h"
#include "cuda/sm90/launch.h"
#include "cuda/sm90/launch_common.h"
#include TILEFLASH_CUDA_SM90_HEAD_DIMS_HEADER

namespace tileflash::cuda::sm90 {
namespace {

using CompiledTiles = HeadDimTiles<TILEFLASH_CUDA_SM90_HEAD_DIMS>;

// The smallest compiled tile with a Hopper backward that holds head_dim; 0 if none.
constexpr int backward_tile(int head_dim) {
  return CompiledTiles::fitting(head_dim, [](int tile) { return backward_supports_tile(tile); });
}

}  // namespace

std::string backward_unsupported_reason(const BackwardParams& params, const detail::Problem& problem) {
  if (backward_tile(static_cast<int>(problem.head_dim)) == 0)
    return "this build has no sm_90a backward tile for head_dim " + std::to_string(problem.head_dim) +
           " (tiles 64, 96, 128, 256)";
  std::string reason = hopper_path_unsupported_reason(params, problem);
  if (!reason.empty()) return reason;
  if (params.deterministic) return "deterministic mode runs on the Ampere-class backward";
  return tma_stride_reason("dout", params.dout);
}

void run_backward(const BackwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  sm80::check_device_seqlens(params, problem, stream);
  sm80::BackwardKernelParams p;
  p.attn = sm80::make_attention_args(params, problem);
  p.dout = sm80::sequence_tensor(params.dout, problem.varlen);
  p.dq = sm80::sequence_tensor(params.dq, problem.varlen);
  p.dk = sm80::sequence_tensor(params.dk, problem.varlen);
  p.dv = sm80::sequence_tensor(params.dv, problem.varlen);
  p.rows_q = problem.varlen ? problem.total_q : problem.batch * problem.seq_q;
  p.rows_k = problem.varlen ? problem.total_k : problem.batch * problem.seq_k;
  const TensorMapGeometry geometry = tensor_map_geometry(params, problem);
  const int tile = backward_tile(static_cast<int>(problem.head_dim));
  CompiledTiles::dispatch(tile, [&](auto head_dim_tile) {
    constexpr int kTile = decltype(head_dim_tile)::value;
    if constexpr (backward_supports_tile(kTile)) {
      if (geometry.float16) launch_backward<kTile, __half>(geometry, p, stream);
      else launch_backward<kTile, __nv_bfloat16>(geometry, p, stream);
    }
  });
}

}  // namespace tileflash::cuda::sm90
