// tileflash: a non-owning, strided view of a tensor in host or device memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace tileflash {

// float8_e4m3: OCP FP8 E4M3 (torch.float8_e4m3fn: no infinities, max 448), forward inputs only.
enum class DType : std::uint8_t { float32, float16, bfloat16, float64, int32, float8_e4m3 };
enum class DeviceType : std::uint8_t { cpu, cuda };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::float8_e4m3: return 1;
    case DType::float16:
    case DType::bfloat16: return 2;
    case DType::float32:
    case DType::int32: return 4;
    case DType::float64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t);
const char* device_name(DeviceType d);

// Shape and strides are counted in elements and are 64-bit, so one view can
// address more than 2^31 elements. A view with rank 0 means "not given" for
// the optional arguments of an operation.
struct TensorView {
  static constexpr int kMaxRank = 4;

  void* data = nullptr;
  DType dtype = DType::float32;
  DeviceType device = DeviceType::cpu;
  int device_index = 0;
  int rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t stride[kMaxRank] = {};

  bool defined() const { return rank > 0; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  std::int64_t size(int dim) const { return shape[dim]; }

  // Row-major (last dimension fastest) view over `data`.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               DeviceType device = DeviceType::cpu, int device_index = 0);
  // The same memory with two logical dimensions swapped (no copy): e.g. a
  // (batch, heads, seq, dim) buffer seen as (batch, seq, heads, dim).
  TensorView transposed(int dim_a, int dim_b) const;
};

}  // namespace tileflash
