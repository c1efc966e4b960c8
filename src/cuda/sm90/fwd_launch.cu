// Host side of the Hopper forward: which calls it takes and the dispatch to the compiled
// head-dim tile.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/common/head_dim_tiles.h"
#include "cuda/common/stream_workspace.h"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/fp8_values.h"
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

std::string fp8_forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem) {
  const std::string fp8 = "float8_e4m3fn inputs";
  if (CompiledTiles::fitting(static_cast<int>(problem.head_dim)) == 0)
    return "q: " + fp8 + " run on the sm_90a forward, and this build has no head-dim tile for head_dim " +
           std::to_string(problem.head_dim);
  if (problem.head_dim % 16 != 0)
    return "q: " + fp8 + " need head_dim to be a multiple of 16 (16-byte rows), got " + std::to_string(problem.head_dim);
  if (problem.has_softcap) return "softcap: is not supported with " + fp8;
  if (problem.has_bias) return "bias: is not supported with " + fp8;
  if (problem.has_alibi) return "alibi_slopes: is not supported with " + fp8;
  if (problem.has_dropout) return "dropout_p: is not supported with " + fp8;
  if (!(problem.scale > 0.0f)) return "softmax_scale: must be positive with " + fp8;
  // The V transposition's grid takes batch entries and kv heads as its y and z.
  if (problem.batch > 65535) return "q: " + fp8 + " support a batch of at most 65535 sequences";
  if (problem.heads_kv > 65535) return "k: " + fp8 + " support at most 65535 kv heads";
  if (std::max({problem.seq_q, problem.seq_k, problem.total_q, problem.total_k}) >= (std::int64_t{1} << 30))
    return "q: " + fp8 + " support sequences (and packed varlen totals) below 2^30 rows";
  std::string reason = sm80::alignment_unsupported_reason(params, problem);
  if (!reason.empty()) return reason;
  reason = hopper_path_unsupported_reason(params, problem);
  if (!reason.empty()) return "q: " + fp8 + " run on the Hopper (sm_90) forward only, which cannot take this call: " + reason;
  return {};
}

void run_forward(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  sm80::check_device_seqlens(params, problem, stream);
  const sm80::AttentionArgs args = sm80::make_attention_args(params, problem);
  const TensorMapGeometry geometry = tensor_map_geometry(params, problem);
  const int tile = CompiledTiles::fitting(static_cast<int>(problem.head_dim));
  if (geometry.fp8) {
    // V^T lives until the attention kernel is done with it (freed in stream order).
    const std::int64_t pitch = transposed_key_pitch(args, geometry.rows_k);
    const std::int64_t bytes = geometry.batch * args.heads_kv * args.head_dim * pitch;
    StreamWorkspace workspace(std::max<std::int64_t>(bytes, 16), stream, "allocating the FP8 forward's transposed V");
    const TransposedValues values{workspace.data(), pitch};
    transpose_values_fp8(args, values, bytes, stream);
    const bool float16_out = problem.out_dtype == DType::float16;
    CompiledTiles::dispatch(tile, [&](auto head_dim_tile) {
      if (float16_out) launch_forward_fp8<decltype(head_dim_tile)::value, __half>(geometry, args, values, stream);
      else launch_forward_fp8<decltype(head_dim_tile)::value, __nv_bfloat16>(geometry, args, values, stream);
    });
    return;
  }
  CompiledTiles::dispatch(tile, [&](auto head_dim_tile) {
    if (geometry.float16) launch_forward<decltype(head_dim_tile)::value, __half>(geometry, args, stream);
    else launch_forward<decltype(head_dim_tile)::value, __nv_bfloat16>(geometry, args, stream);
  });
}

}  // namespace tileflash::cuda::sm90
