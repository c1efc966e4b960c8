// Host side of the Ampere-class kernels' arguments: alignment rules, varlen offsets
// resident on the device, and the translation of params into AttentionArgs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/philox.h"
#include "cuda/sm80/launch_args.h"
#include "tileflash/error.h"

namespace tileflash::cuda::sm80 {
namespace {

void check_offsets(const char* name, const std::vector<std::int32_t>& offsets, std::int64_t total,
                   std::int64_t max_len) {
  if (offsets[0] != 0) throw Error(name, "must start at 0, got " + std::to_string(offsets[0]));
  for (std::size_t b = 0; b + 1 < offsets.size(); ++b) {
    const std::int64_t len = static_cast<std::int64_t>(offsets[b + 1]) - offsets[b];
    if (len < 0)
      throw Error(name, "offsets must be non-decreasing (entry " + std::to_string(b + 1) + " is smaller than entry " +
                            std::to_string(b) + ")");
    if (len > max_len)
      throw Error(name, "a sequence of length " + std::to_string(len) + " exceeds the given max_seqlen " +
                            std::to_string(max_len));
  }
  if (offsets.back() > total)
    throw Error(name, "last offset " + std::to_string(offsets.back()) + " exceeds the packed length " +
                          std::to_string(total));
}

}  // namespace

constexpr std::uintptr_t kVectorBytes = 16;  // one cp.async / vector store

std::string misaligned_reason(const char* name, const TensorView& t) {
  const std::int64_t elements_per_vector = static_cast<std::int64_t>(kVectorBytes / dtype_size(t.dtype));
  if (reinterpret_cast<std::uintptr_t>(t.data) % kVectorBytes != 0)
    return std::string(name) + ": the cuda kernels need a 16-byte aligned data pointer";
  for (int d = 0; d + 1 < t.rank; ++d)
    if (t.shape[d] > 1 && t.stride[d] % elements_per_vector != 0)
      return std::string(name) + ": the cuda kernels need every stride to be a multiple of " +
             std::to_string(elements_per_vector) + " elements (16 bytes); dimension " + std::to_string(d) +
             " has stride " + std::to_string(t.stride[d]);
  return {};
}

SequenceTensor sequence_tensor(const TensorView& t, bool varlen) {
  SequenceTensor s;
  s.data = t.data;
  if (varlen) {
    s.row_stride = t.stride[0];
    s.head_stride = t.stride[1];
  } else {
    s.batch_stride = t.stride[0];
    s.row_stride = t.stride[1];
    s.head_stride = t.stride[2];
  }
  return s;
}

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw RuntimeError(std::string("tileflash: ") + what + ": " + cudaGetErrorString(status));
}

int device_shared_memory_per_block() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  int bytes = 0;
  check_cuda(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "querying the device's shared memory per block");
  const long long cap = positive_environment_value(kSharedMemoryCapVariable, "bytes", bytes);
  return static_cast<int>(std::min<long long>(cap, bytes));
}

long long positive_environment_value(const char* variable, const char* unit, long long unset) {
  const char* text = std::getenv(variable);
  if (text == nullptr) return unset;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || value <= 0)
    throw Error(variable, std::string("must be a positive number of ") + unit + ", got \"" + text + "\"");
  return value;
}

std::string alignment_unsupported_reason(const ForwardParams& params, const detail::Problem& problem) {
  if (problem.head_dim % 8 != 0)
    return "q: the cuda kernels need head_dim to be a multiple of 8, got " + std::to_string(problem.head_dim);
  for (const auto& [name, t] : {std::pair{"q", &params.q}, std::pair{"k", &params.k}, std::pair{"v", &params.v},
                                std::pair{"out", &params.out}}) {
    std::string reason = misaligned_reason(name, *t);
    if (!reason.empty()) return reason;
  }
  return {};
}

void check_device_seqlens(const ForwardParams& params, const detail::Problem& problem, cudaStream_t stream) {
  if (!problem.varlen) return;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone) return;
  const auto entries = static_cast<std::size_t>(problem.batch + 1);
  for (const auto& [name, view, total, max_len] :
       {std::tuple{"cu_seqlens_q", &params.cu_seqlens_q, problem.total_q, problem.seq_q},
        std::tuple{"cu_seqlens_k", &params.cu_seqlens_k, problem.total_k, problem.seq_k}}) {
    if (view->stride[0] != 1 && problem.batch > 0) throw Error(name, "must be contiguous");
    std::vector<std::int32_t> offsets(entries);
    check_cuda(cudaMemcpyAsync(offsets.data(), view->data, entries * sizeof(std::int32_t), cudaMemcpyDeviceToHost, stream),
               "copying cu_seqlens to the host");
    check_cuda(cudaStreamSynchronize(stream), "copying cu_seqlens to the host");
    check_offsets(name, offsets, total, max_len);
  }
}

AttentionArgs make_attention_args(const ForwardParams& params, const detail::Problem& problem) {
  AttentionArgs a;
  a.q = sequence_tensor(params.q, problem.varlen);
  a.k = sequence_tensor(params.k, problem.varlen);
  a.v = sequence_tensor(params.v, problem.varlen);
  a.out = sequence_tensor(params.out, problem.varlen);
  if (problem.has_lse) {
    a.lse = static_cast<float*>(params.lse.data);
    if (problem.varlen) {
      a.lse_head_stride = params.lse.stride[0];
      a.lse_row_stride = params.lse.stride[1];
    } else {
      a.lse_batch_stride = params.lse.stride[0];
      a.lse_head_stride = params.lse.stride[1];
      a.lse_row_stride = params.lse.stride[2];
    }
  }
  if (problem.varlen) {
    a.cu_seqlens_q = static_cast<const std::int32_t*>(params.cu_seqlens_q.data);
    a.cu_seqlens_k = static_cast<const std::int32_t*>(params.cu_seqlens_k.data);
  }
  a.batch = static_cast<int>(problem.batch);
  a.heads_q = static_cast<int>(problem.heads_q);
  a.heads_kv = static_cast<int>(problem.heads_kv);
  a.head_dim = static_cast<int>(problem.head_dim);
  a.seq_q = problem.seq_q;
  a.seq_k = problem.seq_k;
  a.window_left = problem.window_left;
  a.window_right = problem.window_right;
  a.scale = problem.scale;
  a.q_descale = static_cast<const float*>(params.q_descale.data);
  a.k_descale = static_cast<const float*>(params.k_descale.data);
  a.v_descale = static_cast<const float*>(params.v_descale.data);
  a.softcap = problem.has_softcap ? params.softcap : 0.0f;
  if (problem.has_bias) {
    const TensorView& b = params.bias;
    a.bias = b.data;
    a.bias_is_float32 = b.dtype == DType::float32;
    a.bias_batch_stride = b.shape[0] == 1 ? 0 : b.stride[0];
    a.bias_head_stride = b.shape[1] == 1 ? 0 : b.stride[1];
    a.bias_row_stride = b.stride[2];
    a.bias_col_stride = b.stride[3];
  }
  if (problem.has_alibi) {
    const TensorView& s = params.alibi_slopes;
    a.alibi_slopes = static_cast<const float*>(s.data);
    if (s.rank == 1) {
      a.alibi_head_stride = s.stride[0];
    } else {
      a.alibi_batch_stride = s.stride[0];
      a.alibi_head_stride = s.stride[1];
    }
  }
  if (problem.has_dropout) {
    a.dropout_threshold = detail::dropout_threshold(params.dropout_p);
    a.dropout_rescale = 1.0f / (1.0f - params.dropout_p);
    a.dropout_seed = params.dropout_seed;
    a.dropout_offset = params.dropout_offset;
  }
  return a;
}

}  // namespace tileflash::cuda::sm80
