// Host side shared by the Hopper forward and backward: which calls the Hopper path may
// take, and the TMA tensor maps.
#include "cuda/sm90/launch_common.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/fp8_values.h"
#include "cuda/sm90/fwd_launch.h"
#include "cuda/sm90/launch.h"
#include "tileflash/error.h"

namespace tileflash::cuda::sm90 {
namespace {

constexpr std::int64_t kMaxTmaStrideBytes = std::int64_t{1} << 40;

// cuTensorMapEncodeTiled is a driver function; it is looked up through the runtime so
// that the library does not link libcuda (and loads on machines without a driver).
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static const EncodeTiled function = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      entry = nullptr;
    return reinterpret_cast<EncodeTiled>(entry);
  }();
  return function;
}

// A TMA stride for a dimension of `extent` elements: dimensions of extent 1 are never
// stepped over, so any valid stride stands in for theirs (which may be 0 or unaligned).
std::int64_t tma_stride_bytes(std::int64_t stride, std::int64_t extent, std::int64_t fallback, int element_bytes) {
  return (extent > 1 ? stride : fallback) * element_bytes;
}

CUtensorMap encode_tensor_map(CUtensorMapDataType type, void* data, const cuuint64_t (&dims)[4],
                              const cuuint64_t (&strides)[3], const cuuint32_t (&box)[4]) {
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult status =
      encode_tiled()(&map, type, 4, data, dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (status != CUDA_SUCCESS)
    throw RuntimeError("cuTensorMapEncodeTiled failed with CUresult " + std::to_string(static_cast<int>(status)));
  return map;
}

bool forced_ampere_path() {
  const char* value = std::getenv(kForceSm80Variable);
  return value != nullptr && std::string(value) == "1";
}

bool device_is_sm90(int device) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

}  // namespace

// (head_dim, rows, heads, batch) of one q/k/v/dout tensor, boxes of 128 bytes (64 columns,
// or 128 in FP8) x box_rows rows.
CUtensorMap make_tensor_map(const sm80::SequenceTensor& t, const TensorMapGeometry& geometry, std::int64_t rows,
                            std::int64_t heads, int box_rows) {
  const std::int64_t head_dim = geometry.head_dim, batch = geometry.batch;
  const int element_bytes = geometry.fp8 ? 1 : 2;
  // TMA rejects empty dimensions; an empty K (seq_k = 0) is never read.
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(rows > 0 ? rows : 1),
                              static_cast<cuuint64_t>(heads), static_cast<cuuint64_t>(batch)};
  const cuuint64_t strides[3] = {
      static_cast<cuuint64_t>(tma_stride_bytes(t.row_stride, rows, head_dim, element_bytes)),
      static_cast<cuuint64_t>(tma_stride_bytes(t.head_stride, heads, head_dim, element_bytes)),
      static_cast<cuuint64_t>(tma_stride_bytes(t.batch_stride, batch, head_dim, element_bytes))};
  const cuuint32_t box[4] = {static_cast<cuuint32_t>(128 / element_bytes), static_cast<cuuint32_t>(box_rows), 1, 1};
  const CUtensorMapDataType type = geometry.fp8       ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : geometry.float16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                      : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode_tensor_map(type, t.data, dims, strides, box);
}

CUtensorMap make_transposed_values_map(const TransposedValues& values, const TensorMapGeometry& geometry,
                                       int box_rows) {
  const std::int64_t pitch = values.key_pitch;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(pitch), static_cast<cuuint64_t>(geometry.head_dim),
                              static_cast<cuuint64_t>(geometry.heads_kv), static_cast<cuuint64_t>(geometry.batch)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(pitch), static_cast<cuuint64_t>(pitch * geometry.head_dim),
                                 static_cast<cuuint64_t>(pitch * geometry.head_dim * geometry.heads_kv)};
  const cuuint32_t box[4] = {kTransposedKeysPerBox, static_cast<cuuint32_t>(box_rows), 1, 1};
  return encode_tensor_map(CU_TENSOR_MAP_DATA_TYPE_UINT8, values.data, dims, strides, box);
}

std::string tma_stride_reason(const char* name, const TensorView& t) {
  for (int d = 0; d + 1 < t.rank; ++d)
    if (t.shape[d] > 1 && (t.stride[d] <= 0 || t.stride[d] * 2 >= kMaxTmaStrideBytes))
      return std::string(name) + ": TMA needs positive strides below 2^40 bytes";
  return {};
}

std::string hopper_path_unsupported_reason(const ForwardParams& params, const detail::Problem& problem) {
  if (forced_ampere_path()) return std::string(kForceSm80Variable) + " is set";
  if (!device_is_sm90(params.q.device_index)) return "the device is not sm_90";
  if (encode_tiled() == nullptr) return "the driver does not provide cuTensorMapEncodeTiled";
  if (problem.has_softcap || problem.has_bias || problem.has_alibi || problem.has_dropout || !(problem.scale > 0.0f))
    return "softcap, bias, ALiBi, dropout and non-positive scales run on the Ampere-class kernel";
  for (const auto& [name, t] : {std::pair{"q", &params.q}, std::pair{"k", &params.k}, std::pair{"v", &params.v}}) {
    std::string reason = tma_stride_reason(name, *t);
    if (!reason.empty()) return reason;
  }
  return {};
}

TensorMapGeometry tensor_map_geometry(const ForwardParams& params, const detail::Problem& problem) {
  TensorMapGeometry geometry;
  geometry.float16 = problem.dtype == DType::float16;
  geometry.fp8 = problem.dtype == DType::float8_e4m3;
  geometry.head_dim = problem.head_dim;
  geometry.rows_q = problem.varlen ? problem.total_q : problem.seq_q;
  geometry.rows_k = problem.varlen ? problem.total_k : problem.seq_k;
  geometry.heads_q = problem.heads_q;
  geometry.heads_kv = problem.heads_kv;
  geometry.batch = problem.varlen ? 1 : problem.batch;
  sm80::check_cuda(cudaDeviceGetAttribute(&geometry.multiprocessors, cudaDevAttrMultiProcessorCount,
                                          params.q.device_index),
                   "reading the multiprocessor count");
  // Fewer persistent blocks (the forward's) than multiprocessors make each block walk
  // several tiles even on small problems: what the tests use to reach the hand-over between
  // tiles, and the backward's main grid beside its cut last round.
  geometry.multiprocessors = static_cast<int>(std::min<long long>(
      sm80::positive_environment_value(kPersistentBlocksVariable, "blocks", geometry.multiprocessors),
      geometry.multiprocessors));
  return geometry;
}

}  // namespace tileflash::cuda::sm90
