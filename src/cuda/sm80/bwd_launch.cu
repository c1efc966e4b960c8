// Backward entry points of the Ampere-class kernels: what they support, and the dispatch
// to the compiled head-dim tile (one translation unit per tile from bwd_tile.cu.in).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

#include "cuda/sm80/bwd_kernel.cuh"
#include "cuda/sm80/bwd_params.h"
#include "cuda/sm80/fwd_launch.h"
#include "cuda/sm80/launch.h"
#include "cuda/sm80/launch_args.h"
#include "tileflash/error.h"

namespace tileflash::cuda::sm80 {

template <int kHeadDim, class Element>
void run_backward_tile(int variant, const BackwardKernelParams& call, cudaStream_t stream);

namespace {

// Grid dimensions y and z (kv heads, batch) are limited to 65535 blocks.
constexpr std::int64_t kMaxGridYZ = 65535;
// Sequence positions are int inside the kernels.
constexpr std::int64_t kMaxSequence = std::int64_t{1} << 30;

// The smallest compiled tile that holds head_dim and that the backward can split; 0 if none.
constexpr int backward_tile(int head_dim) {
  return CompiledHeadDimTiles::fitting(head_dim, [](int tile) { return backward_supports_tile(tile); });
}

template <int kTile, int... kVariants>
int smem_bytes_of_variant(int variant, std::integer_sequence<int, kVariants...>) {
  int bytes = 0;
  ((bytes = variant == kVariants ? BackwardKernelTraits<kTile, __half, kVariants>::kSmemBytes : bytes), ...);
  return bytes;
}

template <int kTile>
int smem_bytes(int variant) {
  if constexpr (backward_supports_tile(kTile))
    return smem_bytes_of_variant<kTile>(variant, std::make_integer_sequence<int, kBackwardVariants>{});
  else return 0;
}

template <int... kTiles>
int smem_bytes_of_tile(int tile, int variant, HeadDimTiles<kTiles...>) {
  int bytes = 0;
  ((bytes = tile == kTiles ? smem_bytes<kTiles>(variant) : bytes), ...);
  return bytes;
}

template <class Element, int kTile>
void launch_if_supported(int tile, int variant, const BackwardKernelParams& p, cudaStream_t stream) {
  if constexpr (backward_supports_tile(kTile))
    if (tile == kTile) run_backward_tile<kTile, Element>(variant, p, stream);
}

template <class Element, int... kTiles>
void launch_tile(int tile, int variant, const BackwardKernelParams& p, cudaStream_t stream, HeadDimTiles<kTiles...>) {
  (launch_if_supported<Element, kTiles>(tile, variant, p, stream), ...);
}

constexpr const char* kSmemLimitVariable = "TILEFLASH_SMEM_LIMIT_BYTES";

// The shared memory per block the tiles may use: the device's opt-in maximum, lowered to
// TILEFLASH_SMEM_LIMIT_BYTES when that is set (so that a large GPU runs, and the tests
// check, the variants of smaller ones). Read at every selection, so a test can change it.
// Returns the bytes, or -1 with `reason` set when the variable is not a positive integer.
int shared_memory_limit(int device_index, std::string& reason) {
  int bytes = 0;
  check_cuda(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index),
             "cudaDeviceGetAttribute");
  const char* cap = std::getenv(kSmemLimitVariable);
  if (cap == nullptr) return bytes;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(cap, &end, 10);
  if (end == cap || *end != '\0' || errno != 0 || value <= 0) {
    reason = std::string(kSmemLimitVariable) + ": must be a positive number of bytes, got \"" + cap + "\"";
    return -1;
  }
  return static_cast<int>(std::min<long long>(value, bytes));
}

// The fastest variant of the tile within `limit` bytes of shared memory; -1 if none.
int backward_variant(int tile, int limit) {
  for (int variant = 0; variant < kBackwardVariants; ++variant)
    if (smem_bytes_of_tile(tile, variant, CompiledHeadDimTiles{}) <= limit) return variant;
  return -1;
}

}  // namespace

std::string backward_unsupported_reason(const BackwardParams& params, const detail::Problem& problem) {
  if (problem.dtype != DType::float16 && problem.dtype != DType::bfloat16)
    return std::string("q: dtype ") + dtype_name(problem.dtype) +
           " is not supported by the cuda kernels (float16 or bfloat16)";
  const int tile = backward_tile(static_cast<int>(problem.head_dim));
  if (tile == 0)
    return "q: head_dim " + std::to_string(problem.head_dim) +
           " exceeds the largest head-dim tile the cuda backward can use in this build (tiles " +
           "that are multiples of 32 up to 128 or of 64 above; see TILEFLASH_HEAD_DIMS)";
  if (problem.heads_kv > kMaxGridYZ) return "k: the cuda backward supports at most 65535 key/value heads";
  if (problem.batch > kMaxGridYZ) return "q: the cuda backward supports a batch of at most 65535 sequences";
  if (problem.seq_q >= kMaxSequence || problem.seq_k >= kMaxSequence)
    return "q: the cuda backward supports sequences of fewer than 2^30 tokens";
  std::string reason = alignment_unsupported_reason(params, problem);
  if (!reason.empty()) return reason;
  for (const auto& [name, t] : {std::pair{"dout", &params.dout}, std::pair{"dq", &params.dq},
                                std::pair{"dk", &params.dk}, std::pair{"dv", &params.dv}}) {
    reason = misaligned_reason(name, *t);
    if (!reason.empty()) return reason;
  }
  const int limit = shared_memory_limit(params.q.device_index, reason);
  if (limit < 0) return reason;
  if (backward_variant(tile, limit) < 0)
    return "q: the cuda backward for head_dim " + std::to_string(problem.head_dim) + " (tile " + std::to_string(tile) +
           ") needs at least " + std::to_string(smem_bytes_of_tile(tile, kBackwardVariants - 1, CompiledHeadDimTiles{})) +
           " bytes of shared memory per block; this device offers " + std::to_string(limit) +
           (std::getenv(kSmemLimitVariable) != nullptr ? std::string(" (capped by ") + kSmemLimitVariable + ")" : "");
  return {};
}

void run_backward(const BackwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  check_device_seqlens(params, problem, stream);
  BackwardKernelParams p;
  p.attn = make_attention_args(params, problem);
  p.dout = sequence_tensor(params.dout, problem.varlen);
  p.dq = sequence_tensor(params.dq, problem.varlen);
  p.dk = sequence_tensor(params.dk, problem.varlen);
  p.dv = sequence_tensor(params.dv, problem.varlen);
  p.rows_q = problem.varlen ? problem.total_q : problem.batch * problem.seq_q;
  p.rows_k = problem.varlen ? problem.total_k : problem.batch * problem.seq_k;
  p.deterministic = params.deterministic;
  const int tile = backward_tile(static_cast<int>(problem.head_dim));
  // Selection checked that a variant fits (unless the cap changed since).
  std::string reason;
  const int variant = backward_variant(tile, shared_memory_limit(params.q.device_index, reason));
  if (variant < 0) throw RuntimeError("tileflash: cuda backward: no tile fits the shared memory limit " + reason);
  if (problem.dtype == DType::float16) launch_tile<__half>(tile, variant, p, stream, CompiledHeadDimTiles{});
  else launch_tile<__nv_bfloat16>(tile, variant, p, stream, CompiledHeadDimTiles{});
}

}  // namespace tileflash::cuda::sm80
