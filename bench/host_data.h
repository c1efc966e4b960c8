// Host-side inputs and conversions for tileflash-bench: random values, dtype and
// memory-layout packing, tensor views, device names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench.h"
#include "tileflash/tensor.h"

namespace tileflash::bench {

// A logical (batch, seq, heads, head_dim) tensor.
struct Shape4 {
  std::int64_t batch, seq, heads, dim;
  std::int64_t numel() const { return batch * seq * heads * dim; }
};

Shape4 q_shape(const Case& c);
Shape4 kv_shape(const Case& c);

// Deterministic pseudo-random values with mean 0 and variance 1 (a sum of uniforms,
// close to normal), a fresh stream per seed.
std::vector<float> random_values(std::size_t count, std::uint64_t seed);
HostInputs make_inputs(const Case& c, std::uint64_t seed);

// Values in logical order <-> bytes in `dtype` and `layout` (bhsd swaps seq and heads).
std::vector<std::byte> pack(const std::vector<float>& logical, const Shape4& shape, DType dtype, Layout layout);
std::vector<float> unpack(const void* storage, const Shape4& shape, DType dtype, Layout layout);

// The (batch, seq, heads, head_dim) view of storage laid out as `layout`.
TensorView make_view(void* data, const Shape4& shape, DType dtype, Layout layout, DeviceType device,
                     int device_index = 0);

std::string cpu_model_name();

}  // namespace tileflash::bench
