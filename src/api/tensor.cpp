#include "tileflash/tensor.h"

#include <utility>

#include "tileflash/error.h"

namespace tileflash {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::float64: return "float64";
    case DType::int32: return "int32";
    case DType::float8_e4m3: return "float8_e4m3fn";
  }
  return "unknown";
}

const char* device_name(DeviceType d) { return d == DeviceType::cpu ? "cpu" : "cuda"; }

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                                  DeviceType device, int device_index) {
  if (shape.size() == 0 || shape.size() > static_cast<std::size_t>(kMaxRank))
    throw Error("shape", "rank must be between 1 and 4");
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.device_index = device_index;
  t.rank = static_cast<int>(shape.size());
  int i = 0;
  for (std::int64_t s : shape) t.shape[i++] = s;
  std::int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

TensorView TensorView::transposed(int dim_a, int dim_b) const {
  if (dim_a < 0 || dim_a >= rank || dim_b < 0 || dim_b >= rank)
    throw Error("dim", "transposed dimensions must lie in [0, rank)");
  TensorView t = *this;
  std::swap(t.shape[dim_a], t.shape[dim_b]);
  std::swap(t.stride[dim_a], t.stride[dim_b]);
  return t;
}

}  // namespace tileflash
