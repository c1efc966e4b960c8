// Forward entry points of the Ampere-class kernels: what they support, and the dispatch
// to the compiled head-dim tile.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda/sm80/fwd_launch.h"
#include "cuda/sm80/launch.h"
#include "cuda/sm80/launch_args.h"
#include "tileflash/error.h"

namespace tileflash::cuda::sm80 {

// Grid dimensions y and z (heads, batch) are limited to 65535 blocks.
constexpr std::int64_t kMaxGridYZ = 65535;

std::string forward_unsupported_reason(const ForwardParams& params, const detail::Problem& problem) {
  if (problem.dtype != DType::float16 && problem.dtype != DType::bfloat16)
    return std::string("q: dtype ") + dtype_name(problem.dtype) +
           " is not supported by the cuda kernels (float16 or bfloat16)";
  if (CompiledHeadDimTiles::fitting(static_cast<int>(problem.head_dim)) == 0)
    return "q: head_dim " + std::to_string(problem.head_dim) +
           " exceeds the largest head-dim tile compiled into this build (" +
           std::to_string(CompiledHeadDimTiles::largest()) + ", see TILEFLASH_HEAD_DIMS)";
  if (problem.heads_q > kMaxGridYZ) return "q: the cuda kernels support at most 65535 query heads";
  if (problem.batch > kMaxGridYZ) return "q: the cuda kernels support a batch of at most 65535 sequences";
  const std::int64_t longest = std::max({problem.seq_q, problem.seq_k, problem.total_q, problem.total_k});
  if (longest > std::numeric_limits<std::int32_t>::max())
    return "q: the cuda kernels support sequences (and packed varlen totals) of at most 2^31 - 1 rows";
  return alignment_unsupported_reason(params, problem);
}

void run_forward(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  check_device_seqlens(params, problem, stream);
  const AttentionArgs args = make_attention_args(params, problem);
  const int tile = CompiledHeadDimTiles::fitting(static_cast<int>(problem.head_dim));
  CompiledHeadDimTiles::dispatch(tile, [&](auto head_dim_tile) {
    if (problem.dtype == DType::float16) launch_forward<decltype(head_dim_tile)::value, __half>(args, stream);
    else launch_forward<decltype(head_dim_tile)::value, __nv_bfloat16>(args, stream);
  });
}

}  // namespace tileflash::cuda::sm80
